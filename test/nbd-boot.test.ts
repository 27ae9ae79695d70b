// A real boot from a restore point: a hand-assembled boot sector that writes a marker to COM1 is backed up into a
// repository, exported over NBD through a copy-on-write overlay, and booted by qemu-system-x86_64 (TCG).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BufferDisk, OverlayDisk } from '@vmkeep/disk';
import { NbdServer, newExportToken } from '@vmkeep/nbd';
import { Repository, closeSharedChunkWorkers } from '@vmkeep/repository';
import { makeTempDir, requireBinary } from './peers/process';
import { bootAndWaitForMarker, bootSector } from './peers/boot-sector';

const MARKER = 'VMKEEP-INSTANT-BOOT-OK';


describe('instant boot over NBD', () => {
  let dir: string;
  afterAll(async () => {
    await closeSharedChunkWorkers();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('boots qemu from a restore point exported over NBD and shows the marker on the serial console', async () => {
    requireBinary('qemu-system-x86_64');
    dir = makeTempDir('vmkeep-nbd-boot-');
    const image = Buffer.alloc(4 * 1024 * 1024);
    bootSector(MARKER).copy(image, 0);
    const repo = await Repository.init(path.join(dir, 'repo'), { chunkSize: 256 * 1024 });
    const writer = repo.beginPoint();
    await writer.writeDisk('disk-0', new BufferDisk(image));
    const point = await writer.commit({ vm: 'boot-test' });

    const base = await repo.openDisk(point.id, 'disk-0');
    const overlay = await OverlayDisk.create(base, path.join(dir, 'scratch'));
    const server = new NbdServer({ host: '127.0.0.1', port: 0 });
    const token = newExportToken();
    server.addExport(token, overlay, { readOnly: false });
    const { port } = await server.listen();

    try {
      const serial = await bootAndWaitForMarker(`nbd://127.0.0.1:${port}/${token}`, MARKER);
      expect(serial.split(MARKER).length - 1).toBe(1);
    } finally {
      await server.close();
      await overlay.close();
      await base.close();
    }
    // The repository point is untouched whatever the firmware wrote.
    const again = await repo.openDisk(point.id, 'disk-0');
    expect((await again.read(0, image.length)).equals(image)).toBe(true);
    await again.close();
  });
});
