// A real boot from a restore point: a hand-assembled boot sector that writes a marker to COM1 is backed up into a
// repository, exported over NBD through a copy-on-write overlay, and booted by qemu-system-x86_64 (TCG).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BufferDisk, OverlayDisk } from '@vmkeep/disk';
import { NbdServer, newExportToken } from '@vmkeep/nbd';
import { Repository, closeSharedChunkWorkers } from '@vmkeep/repository';
import { makeTempDir, requireBinary } from './peers/process';
import { bootSector } from './peers/boot-sector';

const MARKER = 'VMKEEP-INSTANT-BOOT-OK';


describe('instant boot over NBD', () => {
  let dir: string;
  afterAll(async () => {
    await closeSharedChunkWorkers();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('boots qemu from a restore point exported over NBD and shows the marker on the serial console', async () => {
    const qemu = requireBinary('qemu-system-x86_64');
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

    const child = spawn(
      qemu,
      [
        '-machine', 'pc,accel=tcg',
        '-m', '32',
        '-nodefaults',
        '-display', 'none',
        '-monitor', 'none',
        '-serial', 'stdio',
        '-no-reboot',
        '-drive', `file=nbd://127.0.0.1:${port}/${token},format=raw,if=ide`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let serial = '';
    let errors = '';
    child.stdout.on('data', (d: Buffer) => (serial += d.toString('latin1')));
    child.stderr.on('data', (d: Buffer) => (errors += d.toString('latin1')));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      const deadline = Date.now() + 60_000;
      while (!serial.includes(MARKER) && child.exitCode === null && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
      if (!serial.includes(MARKER)) {
        throw new Error(`no marker on the serial console; its tail: ${JSON.stringify(serial.slice(-200))}; qemu: ${errors.slice(-500)}`);
      }
      expect(serial.split(MARKER).length - 1).toBe(1);
    } finally {
      if (child.pid !== undefined && child.exitCode === null) child.kill('SIGKILL');
      await exited;
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
