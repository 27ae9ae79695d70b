import { BufferDisk } from '@vmkeep/disk';
import { descriptorFor, diskStream, flatPathOf } from './disk-upload';
import { VmRestoreError } from './errors';

const upload = { datacenterPath: 'DC0', datastore: 'ds', descriptorPath: 'vm/vm_0.vmdk', thin: true, adapterType: 'lsilogic' as const };

describe('disk upload parts', () => {
  it('names the flat extent next to the descriptor', () => {
    expect(flatPathOf('vm/vm_0.vmdk')).toBe('vm/vm_0-flat.vmdk');
  });

  it('builds a vmfs descriptor naming the flat extent, thin when asked', () => {
    const text = descriptorFor(new BufferDisk(Buffer.alloc(4096)), upload).toString();
    expect(text).toContain('createType="vmfs"');
    expect(text).toContain('RW 8 VMFS "vm_0-flat.vmdk"');
    expect(text).toContain('ddb.thinProvisioned = "1"');
  });

  it('refuses a disk that is not whole sectors', () => {
    expect(() => descriptorFor(new BufferDisk(Buffer.alloc(1000)), upload)).toThrow(VmRestoreError);
  });

  it('streams the disk bytes in order and counts them', async () => {
    const data = Buffer.alloc(3 * 1024 * 1024 + 512);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i, i);
    let counted = 0;
    const chunks: Buffer[] = [];
    for await (const chunk of diskStream(new BufferDisk(data), (n) => (counted += n))) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    expect(counted).toBe(data.length);
  });

  it('stops when the signal is aborted', async () => {
    const abort = new AbortController();
    abort.abort(new Error('stop'));
    const stream = diskStream(new BufferDisk(Buffer.alloc(2 * 1024 * 1024)), () => undefined, abort.signal);
    await expect(async () => {
      for await (const _ of stream) void _;
    }).rejects.toThrow('stop');
  });
});
