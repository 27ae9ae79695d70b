import { BufferDisk } from '@vmkeep/disk';
import type { RestorePointDisk } from '@vmkeep/persistence';
import type { VmDiskInfo } from '@vmkeep/vsphere';
import { AllocatedAreasDisk, areaBytes, planDisk, type ParentPoint } from './cbt';

const disk = (over: Partial<VmDiskInfo> = {}): VmDiskInfo => ({
  key: 2000,
  label: 'Hard disk 1',
  capacityBytes: 8 << 20,
  fileName: '[ds] vm/vm.vmdk',
  datastore: 'ds',
  changeId: '52 aa/7',
  ...over,
});

const recorded = (over: Partial<RestorePointDisk> = {}): RestorePointDisk => ({
  key: 'disk-2000',
  deviceKey: 2000,
  label: 'Hard disk 1',
  capacityBytes: 8 << 20,
  fileName: '[ds] vm/vm.vmdk',
  changeId: '52 aa/6',
  backupMode: 'full',
  ...over,
});

const parent = (d: RestorePointDisk = recorded()): ParentPoint => ({ id: 'p1', repositoryPointId: 'rp1', disks: [d] });

describe('planDisk', () => {
  it('goes incremental from the parent disk with the same key, size and file', () => {
    expect(planDisk(disk(), parent())).toMatchObject({ mode: 'incremental', changeId: '52 aa/6', parentDisk: { key: 'disk-2000' } });
  });

  it.each([
    ['a virtual RDM', disk({ rdm: 'virtual' }), parent(), undefined, /raw device mapping/, false],
    ['no changeId in the snapshot', disk({ changeId: undefined }), parent(), undefined, /not active/, false],
    ['no parent', disk(), undefined, undefined, /no earlier restore point/, true],
    ['earlier run incomplete', disk(), parent(), 'job j9, failed', /previous run \(job j9, failed\)/, true],
    ['key changed', disk({ key: 2001 }), parent(), undefined, /no disk with device key 2001/, true],
    ['parent without changeId', disk(), parent(recorded({ changeId: undefined })), undefined, /without changed block tracking/, true],
    ['resized', disk({ capacityBytes: 9 << 20 }), parent(), undefined, /resized/, true],
    ['re-created', disk({ fileName: '[ds] vm/vm_1.vmdk' }), parent(), undefined, /re-created/, true],
  ] as const)('reads whole when %s', (_name, d, p, incomplete, reason, allocatedOnly) => {
    const plan = planDisk(d, p, incomplete);
    expect(plan).toMatchObject({ mode: 'full', allocatedOnly });
    expect(plan.mode === 'full' && plan.reason).toMatch(reason);
  });
});

describe('areaBytes', () => {
  it('counts overlapping and touching areas once', () => {
    expect(areaBytes([])).toBe(0);
    expect(areaBytes([{ offset: 10, length: 10 }, { offset: 0, length: 15 }, { offset: 20, length: 5 }, { offset: 100, length: 1 }])).toBe(26);
  });
});

describe('AllocatedAreasDisk', () => {
  it('declares only the given areas and reads through', async () => {
    const inner = new BufferDisk(Buffer.from('abcdefgh'));
    const d = new AllocatedAreasDisk(inner, [{ offset: 2, length: 3 }]);
    expect(d.size).toBe(8);
    expect(await d.extents()).toEqual([{ offset: 2, length: 3 }]);
    expect((await d.read(1, 3)).toString()).toBe('bcd');
  });
});
