import { ConnectionError, TaskError, type MoRef, type VmInfo, type VsphereSession } from '@vmkeep/vsphere';
import { QuiesceRequiredError, quiesceModeOf, takeSnapshot, type QuiesceMode } from './quiesce';

/** A session whose CreateSnapshot records the quiesce flag and can refuse quiescing like a host does. */
function host(options: { quiesceFault?: Error } = {}) {
  const calls: boolean[] = [];
  const session = {
    createSnapshot: async (_vm: string, _name: string, _description: string, quiesce: boolean): Promise<MoRef> => {
      calls.push(quiesce);
      if (quiesce && options.quiesceFault) throw options.quiesceFault;
      return { type: 'VirtualMachineSnapshot', value: `snapshot-${calls.length}` };
    },
  } as unknown as VsphereSession;
  return { session, calls };
}

const vm = (more: Partial<VmInfo> = {}): VmInfo => ({
  ref: { type: 'VirtualMachine', value: 'vm-1' },
  name: 'web-1',
  datacenter: 'DC0',
  datacenterPath: 'DC0',
  disks: [],
  snapshots: [],
  powerState: 'poweredOn',
  toolsRunningStatus: 'guestToolsRunning',
  ...more,
});

async function take(mode: QuiesceMode, info: VmInfo, h = host()) {
  const phases: string[] = [];
  const result = await takeSnapshot({ session: h.session, info, mode, vmName: 'web-1', name: 'n', description: 'd', setPhase: async (p) => void phases.push(p) });
  return { ...result, calls: h.calls, phases };
}

describe('quiesce modes', () => {
  it('reads the mode from the job options (policies give quiesceMode, "back up now" a boolean)', () => {
    expect(quiesceModeOf({ quiesce: true, quiesceMode: 'require' })).toBe('require');
    expect(quiesceModeOf({ quiesce: false, quiesceMode: 'never' })).toBe('never');
    expect(quiesceModeOf({ quiesce: true })).toBe('try');
    expect(quiesceModeOf({})).toBe('never');
    expect(quiesceModeOf(null)).toBe('never');
    expect(quiesceModeOf({ quiesceMode: 'sometimes' })).toBe('never');
  });

  it('quiesces a running VM with Tools in "require" and "try"', async () => {
    for (const mode of ['require', 'try'] as const) {
      const r = await take(mode, vm());
      expect(r).toMatchObject({ quiesced: true, calls: [true], phases: ['creating quiesced snapshot'] });
      expect(r.note).toBeUndefined();
    }
  });

  it('"never" never asks the host to quiesce', async () => {
    const r = await take('never', vm());
    expect(r).toMatchObject({ quiesced: false, calls: [false] });
    expect(r.note).toBeUndefined();
  });

  it('"require" fails without creating anything when Tools are not running, or when the host cannot quiesce', async () => {
    const noTools = host();
    await expect(take('require', vm({ toolsRunningStatus: 'guestToolsNotRunning' }), noTools)).rejects.toThrow(
      new QuiesceRequiredError('quiescing is required but VMware Tools are not running in VM web-1 (guestToolsNotRunning); no crash-consistent backup was made'),
    );
    expect(noTools.calls).toEqual([]);
    const refusing = host({ quiesceFault: new TaskError('CreateSnapshot_Task on vc1: ApplicationQuiesceFault: the guest could not be quiesced', 'ApplicationQuiesceFault') });
    const err = await take('require', vm(), refusing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QuiesceRequiredError);
    expect((err as Error).message).toMatch(/^quiescing VM web-1 failed: .*ApplicationQuiesceFault.*; quiescing is required, no crash-consistent backup was made$/);
    expect(refusing.calls).toEqual([true]);
  });

  it('"try" falls back to a crash-consistent snapshot and says why', async () => {
    const noTools = await take('try', vm({ toolsRunningStatus: 'guestToolsNotRunning' }));
    expect(noTools).toMatchObject({ quiesced: false, calls: [false], note: expect.stringMatching(/^crash-consistent: VMware Tools are not running in VM web-1/) });
    const refused = await take('try', vm(), host({ quiesceFault: new TaskError('ApplicationQuiesceFault: sync driver timed out', 'ApplicationQuiesceFault') }));
    expect(refused).toMatchObject({ quiesced: false, calls: [true, false], note: expect.stringMatching(/^crash-consistent: quiescing VM web-1 failed: .*sync driver timed out/) });
    expect(refused.phases).toEqual(['creating quiesced snapshot', 'creating snapshot']);
  });

  it('does not quiesce a powered-off VM in any mode, and passes connection errors on', async () => {
    for (const mode of ['require', 'try'] as const) {
      expect(await take(mode, vm({ powerState: 'poweredOff', toolsRunningStatus: 'guestToolsNotRunning' }))).toMatchObject({
        quiesced: false,
        calls: [false],
        note: 'not quiesced: VM web-1 is poweredOff, its disks are at rest',
      });
    }
    await expect(take('try', vm(), host({ quiesceFault: new ConnectionError('cannot reach vc1: ECONNRESET') }))).rejects.toThrow(ConnectionError);
  });
});
