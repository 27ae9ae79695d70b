import { Repository } from '@vmkeep/repository';
import { exportDisk, exportVm } from '@vmkeep/restore';
async function main(): Promise<void> {
  const repo = await Repository.open(process.argv[2]);
  const [point] = await repo.listPoints();
  const key = point.disks[0].key;
  for (const f of ['raw', 'raw', 'vhdx', 'ova', 'vmdk-stream'] as const) {
    const disk = await repo.openDisk(point.id, key);
    const t = Date.now();
    const exp = f === 'ova' ? await exportVm({ name: 'b' }, [disk]) : await exportDisk(disk, f);
    let n = 0;
    for await (const c of exp.chunks) n += (c as Buffer).length;
    const s = (Date.now() - t) / 1000;
    console.log(f, n, `${(disk.size / s / 1e6).toFixed(0)} MB/s of disk`);
  }
}
void main();
