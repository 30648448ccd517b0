"""An IPMI 2.0 (lanplus) BMC for tests: pyghmi's BMC server (its session, RAKP and
command handling are the real protocol ipmitool speaks) with a machine behind it whose
power changes apply a moment after they are asked for, as on real hardware, and a reset
that goes off and on again. It also keeps a table of users that ipmitool's `user` and
`channel setaccess` commands change (a user set up this way can open sessions at once),
and answers `lan print` with the address it listens on.

    python ipmi_bmc.py --port 6230 --user crowbar --password-file F [--delay 1.5]
        [--address 127.0.0.1] [--mac 52:54:00:00:00:01] [--users-file U]

The password comes from a file, never the command line. Each power change is logged to
stdout as "power <state>", each change of a user as "user <id> <what>" (never a
password). With --users-file the user table is written to U after every change, passwords
included: the tests read it to know a password that crowbar generated.
"""

import argparse
import ipaddress
import json
import os
import sys
import threading

import pyghmi.ipmi.bmc as bmc

# IPMI completion codes
INVALID_DATA = 0xcc
PARAMETER_NOT_SUPPORTED = 0x80
MAX_USERS = 10
LAN_CHANNEL = 1
OPERATOR = 3


class Users:
    """The BMC's user table. Slot 1 is the anonymous user, slot 2 the factory admin. A
    user can log in when it has a name and a password, is enabled and may use IPMI
    messaging on the LAN channel; `authdata` (pyghmi's name -> password lookup) follows."""

    def __init__(self, authdata, admin, path):
        self.authdata = authdata
        self.path = path
        self.slots = {i: {'name': '', 'password': '', 'enabled': False, 'ipmi': False,
                          'link': False, 'callin': False, 'privilege': 0x0f}
                      for i in range(1, MAX_USERS + 1)}
        self.slots[2].update(name=admin, password=authdata[admin], enabled=True,
                             ipmi=True, link=True, callin=True, privilege=4)
        self.lock = threading.Lock()
        self.changed(None, 'factory admin')

    def changed(self, uid, what):
        self.authdata.clear()
        for slot in self.slots.values():
            if slot['name'] and slot['password'] and slot['enabled'] and slot['ipmi']:
                self.authdata[slot['name']] = slot['password']
        if uid is not None:
            print('user %d %s' % (uid, what), flush=True)
        if self.path:
            tmp = self.path + '.new'
            with open(tmp, 'w') as f:
                json.dump({str(i): s for i, s in self.slots.items()}, f)
            os.replace(tmp, self.path)

    def slot(self, uid):
        return self.slots.get(uid & 0x3f)


class Machine(bmc.Bmc):
    def __init__(self, authdata, port, delay, address, mac, admin, users_file):
        super().__init__(authdata, port, address=address)
        self.powerstate = 'off'
        self.bootdevice = 'default'
        self.delay = delay
        self.lock = threading.Lock()
        self.address = address
        self.mac = mac
        self.users = Users(authdata, admin, users_file)

    def handle_raw_request(self, request, session):
        netfn, command, data = request['netfn'], request['command'], request['data']
        handlers = {
            (6, 0x42): self.channel_info,
            (6, 0x43): self.set_user_access,
            (6, 0x44): self.get_user_access,
            (6, 0x45): self.set_user_name,
            (6, 0x46): self.get_user_name,
            (6, 0x47): self.set_user_password,
            (0x0c, 0x02): self.lan_parameter,
        }
        handler = handlers.get((netfn, command))
        if handler is None:
            return super().handle_raw_request(request, session)
        try:
            with self.users.lock:
                code, reply = handler(bytes(data))
        except (IndexError, ValueError):
            code, reply = INVALID_DATA, b''
        session.send_ipmi_response(code=code, data=list(reply))

    def channel_info(self, data):
        channel = data[0] & 0x0f
        if channel not in (LAN_CHANNEL, 0x0e):
            return INVALID_DATA, b''
        # 802.3 LAN, IPMB-1.0 protocol, multi-session, IPMI's IANA number
        return 0, bytes([LAN_CHANNEL, 0x04, 0x01, 0x80, 0xf2, 0x1b, 0x00, 0, 0])

    def get_user_access(self, data):
        slot = self.users.slot(data[1])
        if slot is None:
            return INVALID_DATA, b''
        enabled = sum(1 for s in self.users.slots.values() if s['enabled'])
        access = ((slot['callin'] is False) << 6 | slot['link'] << 5 | slot['ipmi'] << 4
                  | slot['privilege'])
        status = 0x40 if slot['enabled'] else 0x80
        return 0, bytes([MAX_USERS, status | enabled, 0, access])

    def set_user_access(self, data):
        change, uid, limits = data[0], data[1], data[2]
        slot = self.users.slot(uid)
        if slot is None or (change & 0x0f) not in (LAN_CHANNEL, 0x0e):
            return INVALID_DATA, b''
        if change & 0x80:
            slot['callin'] = not (change & 0x40)
            slot['link'] = bool(change & 0x20)
            slot['ipmi'] = bool(change & 0x10)
        slot['privilege'] = limits & 0x0f
        self.users.changed(uid & 0x3f, 'access ipmi=%s privilege=%d'
                           % (slot['ipmi'], slot['privilege']))
        return 0, b''

    def get_user_name(self, data):
        slot = self.users.slot(data[0])
        if slot is None:
            return INVALID_DATA, b''
        return 0, slot['name'].encode().ljust(16, b'\0')

    def set_user_name(self, data):
        uid = data[0] & 0x3f
        slot = self.users.slot(uid)
        if slot is None or uid == 1 or len(data) != 17:
            return INVALID_DATA, b''
        slot['name'] = data[1:].split(b'\0', 1)[0].decode()
        self.users.changed(uid, 'name ' + slot['name'])
        return 0, b''

    def set_user_password(self, data):
        uid, operation = data[0] & 0x3f, data[1] & 0x03
        slot = self.users.slot(uid)
        if slot is None:
            return INVALID_DATA, b''
        if operation == 0:
            slot['enabled'] = False
            self.users.changed(uid, 'disabled')
        elif operation == 1:
            slot['enabled'] = True
            self.users.changed(uid, 'enabled')
        else:
            size = 20 if data[0] & 0x80 else 16
            password = data[2:2 + size]
            if len(password) != size:
                return INVALID_DATA, b''
            password = password.split(b'\0', 1)[0].decode()
            if operation == 3:
                return (0 if password == slot['password'] else 0x80), b''
            slot['password'] = password
            self.users.changed(uid, 'password set')
        return 0, b''

    def lan_parameter(self, data):
        if data[0] & 0x80:  # revision only
            return 0, bytes([0x11])
        values = {
            0: bytes([0]),  # set complete
            1: bytes([0x14]),  # MD5 and straight password auth types
            2: bytes([0x14] * 5),
            3: ipaddress.IPv4Address(self.address).packed,
            4: bytes([1]),  # static address
            5: bytes.fromhex(self.mac.replace(':', '')),
            6: ipaddress.IPv4Address('255.255.255.192').packed,
            12: ipaddress.IPv4Address('0.0.0.0').packed,
        }
        value = values.get(data[1])
        if value is None:
            return PARAMETER_NOT_SUPPORTED, b''
        return 0, bytes([0x11]) + value

    def _later(self, state):
        def apply():
            with self.lock:
                self.powerstate = state
            print('power ' + state, flush=True)
        threading.Timer(self.delay, apply).start()

    def get_boot_device(self):
        return self.bootdevice

    def set_boot_device(self, bootdevice):
        self.bootdevice = bootdevice
        print('bootdev ' + str(bootdevice), flush=True)

    def get_power_state(self):
        with self.lock:
            return self.powerstate

    def is_active(self):
        return self.get_power_state() == 'on'

    def power_on(self):
        self._later('on')

    def power_off(self):
        self._later('off')

    def power_shutdown(self):
        self._later('off')

    def power_reset(self):
        with self.lock:
            self.powerstate = 'off'
        print('power off', flush=True)
        self._later('on')

    def power_cycle(self):
        self.power_reset()


def main():
    parser = argparse.ArgumentParser(prog='ipmi_bmc')
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--user', required=True)
    parser.add_argument('--password-file', required=True)
    parser.add_argument('--delay', type=float, default=1.5)
    parser.add_argument('--address', default='127.0.0.1')
    parser.add_argument('--mac', default='52:54:00:00:00:01')
    parser.add_argument('--users-file')
    args = parser.parse_args()
    with open(args.password_file) as f:
        password = f.read().strip()
    machine = Machine({args.user: password}, args.port, args.delay, args.address, args.mac,
                      args.user, args.users_file)
    print('listening', flush=True)
    machine.listen()


if __name__ == '__main__':
    sys.exit(main())
