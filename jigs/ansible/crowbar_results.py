# The `ansible` jig's callback plugin: what each host of one ansible-playbook run came to,
# for crowbar to map back to that host's noderole. crowbar writes this file into the run's
# private directory and enables it there; it is no general-purpose plugin.
#
# Per host it records the outcome (ok, failed, unreachable), the number of changed tasks,
# one log line per task (bounded), the first failed task and its message, and the fact
# `crowbar_wall` when a task sets it (the noderole's wall). At the end it writes everything
# as JSON to the file named by $CROWBAR_RESULTS.
#
# What a host's modules print is the node's: it is kept as text, cut to MAX_MESSAGE
# characters per line and MAX_LINES lines per host.

import json
import os

from ansible.plugins.callback import CallbackBase

MAX_MESSAGE = 2000
MAX_LINES = 500


def _message(result):
    data = result._result
    for key in ('msg', 'stderr', 'reason'):
        value = data.get(key)
        if value:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            return text[:MAX_MESSAGE]
    return ''


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'crowbar_results'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.hosts = {}

    def _host(self, name):
        return self.hosts.setdefault(name, {
            'status': 'ok', 'changed': 0, 'log': [], 'cut': 0, 'wall': None,
            'failed_task': None, 'message': None,
        })

    def _line(self, result, what, message=''):
        host = self._host(result._host.get_name())
        line = '%s: %s' % (what, result._task.get_name())
        if message:
            line += ': ' + message
        if len(host['log']) < MAX_LINES:
            host['log'].append(line)
        else:
            host['cut'] += 1
        return host

    def v2_runner_on_ok(self, result):
        changed = bool(result._result.get('changed'))
        host = self._line(result, 'changed' if changed else 'ok')
        if changed:
            host['changed'] += 1
        facts = result._result.get('ansible_facts') or {}
        if 'crowbar_wall' in facts:
            host['wall'] = facts['crowbar_wall']

    def v2_runner_on_failed(self, result, ignore_errors=False):
        message = _message(result)
        if ignore_errors:
            self._line(result, 'failed (ignored)', message)
            return
        host = self._line(result, 'FAILED', message)
        if host['status'] == 'ok':
            host['status'] = 'failed'
            host['failed_task'] = result._task.get_name()
            host['message'] = message

    def v2_runner_on_unreachable(self, result):
        message = _message(result)
        host = self._line(result, 'UNREACHABLE', message)
        host['status'] = 'unreachable'
        host['failed_task'] = result._task.get_name()
        host['message'] = message

    def v2_runner_on_skipped(self, result):
        self._line(result, 'skipped')

    def v2_playbook_on_stats(self, stats):
        for name in stats.processed:
            self._host(name)
        path = os.environ['CROWBAR_RESULTS']
        with open(path + '.new', 'w') as out:
            json.dump(self.hosts, out, default=str)
        os.replace(path + '.new', path)
