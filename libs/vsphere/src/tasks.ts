/**
 * Waiting for a vSphere Task the way the host means it to be waited for: a private PropertyCollector with one
 * filter on the task's info, and WaitForUpdatesEx long polls that return as soon as the state changes — no
 * fixed polling pause between the task finishing and the caller learning it.
 */
import { TaskError } from './errors';
import { taskErrorFrom } from './faults';
import { objectsSpec, type Invoke } from './property-collector';
import type { MoRef } from './types';
import { field, list, moRef, moRefArg, text, type SoapValue } from './values';

export interface WaitOptions {
  /** Give up after this long (ms); default 1 hour. */
  timeoutMs?: number;
  /** Longest single long poll (s); stays below the connection's request timeout. Default 20 s. */
  maxWaitSeconds?: number;
}

const PATHS = ['info.state', 'info.error', 'info.result'];

/**
 * Resolves with the task's info.result when it succeeds; throws TaskError (fault name + localized message)
 * when it ends in error or does not finish in time. `what` names the operation in messages.
 */
export async function waitForTask(
  invoke: Invoke,
  collector: MoRef,
  task: MoRef,
  what: string,
  options: WaitOptions = {},
): Promise<SoapValue> {
  const deadline = Date.now() + (options.timeoutMs ?? 3_600_000);
  const longest = options.maxWaitSeconds ?? 20;
  const watcher = moRef(await invoke('CreatePropertyCollector', { _this: moRefArg(collector) }));
  if (!watcher) throw new TaskError(`${what}: the host created no property collector to watch task ${task.value}`);
  try {
    await invoke('CreateFilter', { _this: moRefArg(watcher), spec: objectsSpec('Task', [task], PATHS), partialUpdates: false });
    const props = new Map<string, SoapValue>();
    let version = '';
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new TaskError(`${what}: task ${task.value} did not finish in time (last state ${text(props.get('info.state')) ?? 'unknown'})`);
      const update = await invoke('WaitForUpdatesEx', {
        _this: moRefArg(watcher),
        version,
        options: { maxWaitSeconds: Math.max(1, Math.min(longest, Math.ceil(left / 1000))) },
      });
      if (!update) continue; // the long poll ended without a change
      version = text(field(update, 'version')) ?? version;
      applyUpdate(update, props);
      const state = text(props.get('info.state'));
      if (state === 'success') return props.get('info.result');
      if (state === 'error') throw taskErrorFrom(props.get('info.error'), what);
    }
  } finally {
    // Also drops the filter. A failure here leaves only a session-bound object the host removes at logout.
    await invoke('DestroyPropertyCollector', { _this: moRefArg(watcher) }).catch(() => undefined);
  }
}

/** Applies an UpdateSet's property changes (assign / remove) to `props`. */
function applyUpdate(update: SoapValue, props: Map<string, SoapValue>): void {
  for (const filter of list(field(update, 'filterSet'))) {
    for (const object of list(field(filter, 'objectSet'))) {
      for (const change of list(field(object, 'changeSet'))) {
        const name = text(field(change, 'name'));
        if (!name) continue;
        if (text(field(change, 'op')) === 'remove') props.delete(name);
        else props.set(name, field(change, 'val'));
      }
    }
  }
}
