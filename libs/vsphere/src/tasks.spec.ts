import { TaskError } from './errors';
import type { Invoke } from './property-collector';
import { waitForTask } from './tasks';

const collector = { type: 'PropertyCollector', value: 'propertyCollector' };
const task = { type: 'Task', value: 'task-7' };
const watcher = { attributes: { type: 'PropertyCollector' }, $value: 'session[1]pc-2' };

const change = (name: string, val: unknown, op = 'assign') => ({ name, op, val });
const updateSet = (version: string, ...changes: unknown[]) => ({
  version,
  filterSet: { filter: { attributes: { type: 'PropertyFilter' }, $value: 'f-1' }, objectSet: { kind: 'modify', obj: task, changeSet: changes } },
});

/** An invoke that records calls and answers WaitForUpdatesEx from `updates` in turn (undefined: the long poll timed out). */
function host(updates: unknown[]): { invoke: Invoke; calls: { method: string; args: Record<string, unknown> }[] } {
  const calls: { method: string; args: Record<string, unknown> }[] = [];
  const invoke: Invoke = async (method, args) => {
    calls.push({ method, args });
    if (method === 'CreatePropertyCollector') return watcher;
    if (method === 'CreateFilter') return { attributes: { type: 'PropertyFilter' }, $value: 'f-1' };
    if (method === 'WaitForUpdatesEx') return updates.shift();
    return undefined;
  };
  return { invoke, calls };
}

describe('waitForTask', () => {
  it('follows the update versions until success, returns info.result and destroys its collector', async () => {
    const snapshot = { attributes: { type: 'VirtualMachineSnapshot' }, $value: 'snapshot-3' };
    const { invoke, calls } = host([
      updateSet('1', change('info.state', 'running'), change('info.error', undefined), change('info.result', undefined)),
      undefined,
      updateSet('2', change('info.state', 'success'), change('info.result', snapshot)),
    ]);
    await expect(waitForTask(invoke, collector, task, 'snapshot of VM vm-1')).resolves.toEqual(snapshot);
    expect(calls.map((c) => c.method)).toEqual([
      'CreatePropertyCollector',
      'CreateFilter',
      'WaitForUpdatesEx',
      'WaitForUpdatesEx',
      'WaitForUpdatesEx',
      'DestroyPropertyCollector',
    ]);
    const waits = calls.filter((c) => c.method === 'WaitForUpdatesEx');
    expect(waits.map((c) => c.args.version)).toEqual(['', '1', '1']);
    expect(waits[0].args._this).toEqual({ attributes: { type: 'PropertyCollector' }, $value: 'session[1]pc-2' });
    expect(calls[1].args.spec).toMatchObject({ propSet: [{ type: 'Task', pathSet: ['info.state', 'info.error', 'info.result'] }] });
    expect(calls[5].args._this).toEqual(waits[0].args._this);
  });

  it('throws the task fault as a TaskError and still destroys its collector', async () => {
    const fault = { fault: { attributes: { 'xsi:type': 'FileLocked' } }, localizedMessage: 'Unable to access file' };
    const { invoke, calls } = host([updateSet('1', change('info.state', 'error'), change('info.error', fault))]);
    const error = await waitForTask(invoke, collector, task, 'removal of snapshot s-1').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskError);
    expect((error as TaskError).message).toContain('removal of snapshot s-1 failed: Unable to access file');
    expect((error as TaskError).fault).toBe('FileLocked');
    expect(calls[calls.length - 1].method).toBe('DestroyPropertyCollector');
  });

  it('gives up at the deadline with the last state it saw, asking for no long poll beyond it', async () => {
    const { invoke, calls } = host([updateSet('1', change('info.state', 'running'))]);
    const error = await waitForTask(invoke, collector, task, 'reconfiguring VM vm-1', { timeoutMs: 50, maxWaitSeconds: 30 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskError);
    expect((error as TaskError).message).toMatch(/did not finish in time \(last state running\)/);
    for (const call of calls.filter((c) => c.method === 'WaitForUpdatesEx')) {
      expect(call.args.options).toEqual({ maxWaitSeconds: 1 });
    }
    expect(calls[calls.length - 1].method).toBe('DestroyPropertyCollector');
  });

  it('applies a "remove" change', async () => {
    const { invoke } = host([
      updateSet('1', change('info.state', 'running'), change('info.result', 'stale')),
      updateSet('2', change('info.result', undefined, 'remove'), change('info.state', 'success')),
    ]);
    await expect(waitForTask(invoke, collector, task, 'x')).resolves.toBeUndefined();
  });
});
