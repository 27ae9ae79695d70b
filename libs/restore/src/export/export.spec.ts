import { createHash } from 'node:crypto';
import { BufferDisk, DiskError, type Disk, type Extent } from '@vmkeep/disk';
import { BufferSource, MemberSource, openVhdxSource, openVmdkSource, readOvaSource } from '@vmkeep/disk-formats';
import { exportDisk, exportVm } from './disk-export';
import { ExportError, type ExportStream } from './formats';
import { readAhead, readsOf } from './read-ahead';
import { vhdxExportBlockSize } from './vhdx-export';

const MiB = 1024 * 1024;

/** A disk with data in some 1 MiB chunks (as a restore point reports them) and zeros elsewhere. */
function chunkedDisk(size: number, dataChunks: number[], seed = 1): Disk & { data: Buffer } {
  const data = Buffer.alloc(size);
  let x = seed;
  for (const c of dataChunks) {
    for (let i = c * MiB; i < Math.min(size, (c + 1) * MiB); i += 4) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      // Leave a zero hole in each chunk so that zero grains inside allocated chunks are covered too.
      if (i % MiB >= 128 * 1024 && i % MiB < 256 * 1024) continue;
      data.writeUInt32LE(x, i);
    }
  }
  const inner = new BufferDisk(data);
  const extents: Extent[] = dataChunks.map((c) => ({ offset: c * MiB, length: Math.min(MiB, size - c * MiB) }));
  return { data, size, read: (o, l) => inner.read(o, l), extents: async () => extents, close: async () => undefined };
}

async function collect(stream: ExportStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream.chunks) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

async function readAll(disk: Disk): Promise<Buffer> {
  return disk.read(0, disk.size);
}

describe('exportDisk', () => {
  // 5.5 MiB: the last chunk (and VHDX block, and VMDK grain table) is partial.
  const size = 5 * MiB + 512 * 1024 + 512;

  it('streams VHDX in order with its exact length up front, readable back byte-exact', async () => {
    const disk = chunkedDisk(size, [0, 2, 5]);
    const out = await exportDisk(disk, 'vhdx');
    expect(out).toMatchObject({ contentType: 'application/x-vhdx', extension: 'vhdx' });
    const image = await collect(out);
    expect(image.length).toBe(out.length);
    // Prologue plus exactly the three blocks that hold data.
    const vhdx = await openVhdxSource(new BufferSource('x.vhdx', image), 'x.vhdx');
    expect(vhdx.size).toBe(size);
    expect((await readAll(vhdx)).equals(disk.data)).toBe(true);
    expect(out.length! - image.indexOf(disk.data.subarray(0, 4096))).toBe(3 * MiB);
  });

  it('exports an all-zero disk as a VHDX without payload blocks', async () => {
    const disk = chunkedDisk(4 * MiB, []);
    const out = await exportDisk(disk, 'vhdx');
    const vhdx = await openVhdxSource(new BufferSource('z.vhdx', await collect(out)), 'z.vhdx');
    expect((await readAll(vhdx)).equals(Buffer.alloc(4 * MiB))).toBe(true);
  });

  it('streams compressed streamOptimized VMDK and raw, both readable back byte-exact', async () => {
    const disk = chunkedDisk(size, [1, 3, 4]);
    const vmdk = await exportDisk(disk, 'vmdk-stream', { fileName: 'x.vmdk' });
    expect(vmdk.length).toBeUndefined();
    const image = await collect(vmdk);
    expect(image.length).toBeLessThan(size);
    const opened = await openVmdkSource(new BufferSource('x.vmdk', image));
    expect((await readAll(opened)).equals(disk.data)).toBe(true);

    const raw = await exportDisk(disk, 'raw');
    expect(raw.length).toBe(size);
    expect((await collect(raw)).equals(disk.data)).toBe(true);
  });

  it('streams raw reading only the extents, in whole chunks of the disk\'s chunkSize; holes are shared zeros', async () => {
    const CS = 256 * 1024;
    const base = chunkedDisk(size, [1, 4]);
    const reads: Extent[] = [];
    // A chunked source (like a restore point) whose extents are sloppy: unaligned, out of order, overlapping.
    const disk = {
      ...base,
      chunkSize: CS,
      read: (offset: number, length: number) => {
        reads.push({ offset, length });
        return base.read(offset, length);
      },
      extents: async (): Promise<Extent[]> => [
        { offset: 4 * MiB + 100, length: size - 4 * MiB - 100 },
        { offset: MiB, length: MiB },
        { offset: MiB + 10, length: 20 },
      ],
    };
    const pieces: Buffer[] = [];
    for await (const piece of (await exportDisk(disk, 'raw')).chunks) pieces.push(piece);
    expect(Buffer.concat(pieces).equals(base.data)).toBe(true);
    expect(reads.every((r) => r.offset % CS === 0 && (r.length === CS || r.offset + r.length === size))).toBe(true);
    expect(reads.reduce((n, r) => n + r.length, 0)).toBe(MiB + (size - 4 * MiB));
    // Pieces outside every read (0–1 MiB, 2–4 MiB): views of one zero buffer.
    let at = 0;
    const holes = pieces.filter((p) => {
      const start = at;
      at += p.length;
      return !reads.some((r) => r.offset < start + p.length && start < r.offset + r.length);
    });
    expect(holes.reduce((n, p) => n + p.length, 0)).toBe(3 * MiB);
    expect(holes.every((p) => p.every((b) => b === 0))).toBe(true);
    expect(new Set(holes.map((p) => p.buffer)).size).toBe(1);
  });

  it('raw: takes back the buffers its reads returned (each once, through the disk), never the shared zeros', async () => {
    const base = chunkedDisk(6 * MiB, [0, 3, 5]);
    const released: Buffer[] = [];
    const disk = { ...base, chunkSize: MiB, release: (b: Buffer) => released.push(b) };
    const exp = await exportDisk(disk, 'raw');
    const copies: Buffer[] = [];
    for await (const chunk of exp.chunks) {
      copies.push(Buffer.from(chunk));
      exp.release?.(chunk);
      exp.release?.(chunk); // a second release of the same buffer is ignored
    }
    expect(Buffer.concat(copies).equals(base.data)).toBe(true);
    expect(released).toHaveLength(3);
    expect(released.every((b) => b.length === MiB && b.some((x) => x !== 0))).toBe(true);
    exp.release?.(Buffer.alloc(MiB)); // not one of its buffers
    expect(released).toHaveLength(3);
    // A disk without release: nothing to give back.
    expect((await exportDisk(chunkedDisk(MiB, [0]), 'raw')).release).toBeUndefined();
  });

  it('picks 1 MiB VHDX blocks unless the block table would grow past 2 Mi entries', () => {
    expect(vhdxExportBlockSize(10 * MiB)).toBe(MiB);
    expect(vhdxExportBlockSize(2 * 2 ** 40)).toBe(MiB);
    expect(vhdxExportBlockSize(2 * 2 ** 40 + 512)).toBe(2 * MiB);
    expect(vhdxExportBlockSize(64 * 2 ** 40)).toBe(32 * MiB);
  });

  it('refuses what a format cannot hold and unknown formats, with a typed error', async () => {
    const odd = new BufferDisk(Buffer.alloc(1000));
    await expect(exportDisk(odd, 'vhdx')).rejects.toBeInstanceOf(ExportError);
    await expect(exportDisk(odd, 'vmdk-stream')).rejects.toThrow(/512-byte sectors/);
    await expect(exportDisk(odd, 'qcow2' as never)).rejects.toThrow(/unknown export format "qcow2"/);
    await expect(exportVm({ name: 'vm' }, [])).rejects.toBeInstanceOf(ExportError);
  });

  it('fails the stream at a read error instead of producing other bytes', async () => {
    const good = chunkedDisk(4 * MiB, [0, 1, 2, 3]);
    const failing: Disk = {
      ...good,
      read: async (o, l) => {
        if (o + l > 2 * MiB) throw new DiskError('chunk missing', 'test', o);
        return good.read(o, l);
      },
    };
    for (const format of ['raw', 'vhdx', 'vmdk-stream'] as const) {
      await expect(collect(await exportDisk(failing, format))).rejects.toThrow(/chunk missing/);
    }
    await expect(collect(await exportVm({ name: 'vm' }, [failing]))).rejects.toThrow(/chunk missing/);
  });
});

describe('exportVm (OVA)', () => {
  it('streams OVF first, the disks, then a manifest whose hashes match, all at the announced length', async () => {
    const d1 = chunkedDisk(3 * MiB, [0, 2], 7);
    const d2 = chunkedDisk(2 * MiB + 64 * 1024, [1, 2], 9);
    const out = await exportVm({ name: 'web server/01', cpus: 2, memoryMiB: 2048, guestId: 'ubuntu64Guest' }, [d1, d2]);
    expect(out).toMatchObject({ contentType: 'application/x-tar', extension: 'ova' });
    const ova = await collect(out);
    expect(ova.length).toBe(out.length);

    const pkg = await readOvaSource(new BufferSource('x.ova', ova), 'x.ova');
    expect(pkg.members.map((m) => m.name)).toEqual(['web_server_01.ovf', 'web_server_01-disk1.vmdk', 'web_server_01-disk2.vmdk', 'web_server_01.mf']);
    const text = (m: { offset: number; size: number }): string => ova.subarray(m.offset, m.offset + m.size).toString();
    const ovf = text(pkg.members[0]);
    expect(ovf).toContain('<rasd:VirtualQuantity>2</rasd:VirtualQuantity>');
    expect(ovf).toContain('vmw:osType="ubuntu64Guest"');
    const manifest = text(pkg.members[3]).trim().split('\n');
    expect(manifest).toHaveLength(3);
    for (const [i, line] of manifest.entries()) {
      const m = pkg.members[i];
      const sha = createHash('sha256').update(ova.subarray(m.offset, m.offset + m.size)).digest('hex');
      expect(line).toBe(`SHA256(${m.name})= ${sha}`);
    }
    expect(pkg.disks.map((d) => d.capacity)).toEqual([d1.size, d2.size]);
    for (const [i, d] of [d1, d2].entries()) {
      const disk = await openVmdkSource(new MemberSource(new BufferSource('x.ova', ova), pkg.disks[i].member, false));
      expect((await readAll(disk)).equals(d.data)).toBe(true);
    }
  });
});

describe('readAhead', () => {
  it('keeps at most `depth` reads in flight and yields them in request order', async () => {
    let inFlight = 0;
    let most = 0;
    const disk: Disk = {
      size: 64,
      extents: async () => [],
      close: async () => undefined,
      read: async (offset, length) => {
        most = Math.max(most, ++inFlight);
        // Later reads finish first: the order must still be the requests'.
        await new Promise((r) => setTimeout(r, 20 - offset / 4));
        inFlight--;
        return Buffer.alloc(length, offset);
      },
    };
    const got: number[] = [];
    for await (const { offset, data } of readAhead(disk, readsOf([{ offset: 0, length: 64 }], 8), 3)) {
      expect(data.equals(Buffer.alloc(8, offset))).toBe(true);
      got.push(offset);
    }
    expect(got).toEqual([0, 8, 16, 24, 32, 40, 48, 56]);
    expect(most).toBe(3);
  });
});
