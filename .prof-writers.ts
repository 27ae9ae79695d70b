import { randomBytes } from 'node:crypto';
import { BufferDisk } from '@vmkeep/disk';
import { writeImage } from '@vmkeep/disk-formats';
async function t(name: string, fn: () => Promise<unknown>) { const s = Date.now(); await fn(); console.log(name, (Date.now() - s) / 1000); }
async function main() {
  const data = randomBytes(256 * 1024 * 1024);
  const disk = new BufferDisk(data);
  for (const conc of [4, 8, 16]) for (const level of [1, 6]) {
    await t(`writeImage stream L${level} c${conc} (256MiB)`, () => writeImage(disk, '/tmp/wt/p.vmdk', 'vmdk-stream', { compressionLevel: level, concurrency: conc }));
  }
}
main();
