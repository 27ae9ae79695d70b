/**
 * The backup snapshot and its quiesce mode (issue 5):
 * - `require`: a quiesced snapshot or nothing. A running VM without running VMware Tools, or a host that fails
 *   the quiesced snapshot, fails the job with the reason; no crash-consistent point is written.
 * - `try`: quiesce when possible, else a crash-consistent snapshot, and the note says why.
 * - `never`: the snapshot is never quiesced.
 * A powered-off VM is never quiesced (nothing runs in it; its disks are at rest), in every mode.
 */
import { FaultError, TaskError, type MoRef, type VmInfo, type VsphereSession } from '@vmkeep/vsphere';
import { BackupFailure, describeFailure } from './failure';

export type QuiesceMode = 'require' | 'try' | 'never';

/** The job's mode: `options.quiesceMode` (policies), else `options.quiesce: true` (backup now) = try. */
export function quiesceModeOf(options: Record<string, unknown> | null | undefined): QuiesceMode {
  const mode = options?.quiesceMode;
  if (mode === 'require' || mode === 'try' || mode === 'never') return mode;
  return options?.quiesce === true ? 'try' : 'never';
}

export interface SnapshotRequest {
  session: VsphereSession;
  info: VmInfo;
  mode: QuiesceMode;
  vmName: string;
  name: string;
  description: string;
  setPhase: (phase: string) => Promise<void>;
}

export interface TakenSnapshot {
  snapshot: MoRef;
  quiesced: boolean;
  /** Set when the job asked for quiescing and the snapshot is not quiesced: why (for the job and the point). */
  note?: string;
}

/** Raised for mode `require` when the snapshot cannot be quiesced; nothing was created. */
export class QuiesceRequiredError extends BackupFailure {}

/**
 * Whether to ask the host to quiesce, judged from the VM's state (and why not, when the mode wanted it).
 * Throws QuiesceRequiredError for `require` when quiescing cannot work: call it before changing the VM.
 */
export function quiescePlan(info: VmInfo, mode: QuiesceMode, vmName: string): { quiesce: boolean; note?: string } {
  if (mode === 'never') return { quiesce: false };
  if (info.powerState !== undefined && info.powerState !== 'poweredOn') {
    return { quiesce: false, note: `not quiesced: VM ${vmName} is ${info.powerState}, its disks are at rest` };
  }
  if (info.toolsRunningStatus !== 'guestToolsRunning') {
    const why = `VMware Tools are not running in VM ${vmName} (${info.toolsRunningStatus ?? 'tools status unknown'})`;
    if (mode === 'require') throw new QuiesceRequiredError(`quiescing is required but ${why}; no crash-consistent backup was made`);
    return { quiesce: false, note: `crash-consistent: ${why}, the guest could not be quiesced` };
  }
  return { quiesce: true };
}

/** Creates the job's snapshot as the quiesce mode says. */
export async function takeSnapshot(req: SnapshotRequest): Promise<TakenSnapshot> {
  const { session, info, mode, vmName } = req;
  const create = async (quiesce: boolean) => {
    await req.setPhase(quiesce ? 'creating quiesced snapshot' : 'creating snapshot');
    return session.createSnapshot(info.ref.value, req.name, req.description, quiesce);
  };
  const plan = quiescePlan(info, mode, vmName);
  if (!plan.quiesce) return { snapshot: await create(false), quiesced: false, ...(plan.note ? { note: plan.note } : {}) };
  try {
    return { snapshot: await create(true), quiesced: true };
  } catch (err) {
    // Only the host refusing to quiesce falls back; connection errors and the like fail the job as they are.
    if (!(err instanceof TaskError || err instanceof FaultError)) throw err;
    const why = `quiescing VM ${vmName} failed: ${describeFailure(err)}`;
    if (mode === 'require') throw new QuiesceRequiredError(`${why}; quiescing is required, no crash-consistent backup was made`, { cause: err });
    return { snapshot: await create(false), quiesced: false, note: `crash-consistent: ${why}` };
  }
}
