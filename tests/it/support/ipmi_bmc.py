"""An IPMI 2.0 (lanplus) BMC for tests: pyghmi's BMC server (its session, RAKP and
command handling are the real protocol ipmitool speaks) with a machine behind it whose
power changes apply a moment after they are asked for, as on real hardware, and a reset
that goes off and on again.

    python ipmi_bmc.py --port 6230 --user crowbar --password-file F [--delay 1.5]

The password comes from a file, never the command line. Each power change is logged to
stdout as "power <state>".
"""

import argparse
import sys
import threading

import pyghmi.ipmi.bmc as bmc


class Machine(bmc.Bmc):
    def __init__(self, authdata, port, delay):
        super().__init__(authdata, port)
        self.powerstate = 'off'
        self.bootdevice = 'default'
        self.delay = delay
        self.lock = threading.Lock()

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
    args = parser.parse_args()
    with open(args.password_file) as f:
        password = f.read().strip()
    print('listening', flush=True)
    Machine({args.user: password}, args.port, args.delay).listen()


if __name__ == '__main__':
    sys.exit(main())
