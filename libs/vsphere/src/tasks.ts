/** Waiting for a vSphere Task: polls info.state through the property collector with a growing pause. */
import { TaskError } from './errors';
import { taskErrorFrom } from './faults';
import { objectsSpec, retrieveAll, type Invoke } from './property-collector';
import type { MoRef } from './types';
import { text, type SoapValue } from './values';

export interface WaitOptions {
  /** Give up after this long (ms); default 1 hour. */
  timeoutMs?: number;
  /** First pause between polls (ms); grows by half up to `maxIntervalMs`. */
  intervalMs?: number;
  maxIntervalMs?: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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
  let pause = options.intervalMs ?? 100;
  const maxPause = options.maxIntervalMs ?? 2_000;
  for (;;) {
    const [object] = await retrieveAll(invoke, collector, [objectsSpec('Task', [task], ['info.state', 'info.error', 'info.result'])], 1);
    const state = text(object?.props.get('info.state'));
    if (state === 'success') return object!.props.get('info.result');
    if (state === 'error') throw taskErrorFrom(object!.props.get('info.error'), what);
    if (Date.now() + pause > deadline) throw new TaskError(`${what}: task ${task.value} did not finish in time (last state ${state ?? 'unknown'})`);
    await sleep(pause);
    pause = Math.min(maxPause, Math.ceil(pause * 1.5));
  }
}
