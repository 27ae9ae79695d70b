import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { BufferDisk } from '@vmkeep/disk';
import { writeImage } from '@vmkeep/disk-formats';
import { scanData } from './libs/disk-formats/src/writers/scan';
const deflateAsync = promisify(zlib.deflate) as (d: Buffer, o: zlib.ZlibOptions) => Promise<Buffer>;
async function t(name: string, fn: () => Promise<unknown>) { const s = Date.now(); await fn(); console.log(name, (Date.now() - s) / 1000); }
async function main() {
  const data = randomBytes(256 * 1024 * 1024);
  const disk = new BufferDisk(data);
  await t('scan', async () => { for await (const _ of scanData(disk, { unit: 65536 })) void _; });
  for (const level of [1, 6]) {
    await t(`sync deflate L${level}`, async () => { for (let o = 0; o < 64 * 1024 * 1024; o += 65536) zlib.deflateSync(data.subarray(o, o + 65536), { level }); });
    await t(`async deflate x4 L${level} (64MiB)`, async () => {
      const q: Promise<Buffer>[] = [];
      for (let o = 0; o < 64 * 1024 * 1024; o += 65536) { q.push(deflateAsync(data.subarray(o, o + 65536), { level, chunkSize: 66560 })); if (q.length >= 4) await q.shift(); }
      await Promise.all(q);
    });
    await t(`writeImage stream L${level} (256MiB)`, () => writeImage(disk, '/tmp/wt/p.vmdk', 'vmdk-stream', { compressionLevel: level }));
  }
}
main();
