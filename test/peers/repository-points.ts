// Test helper: restore points written straight into a repository (no appliance, no vSphere).
import { openImage } from '@vmkeep/disk-formats';
import { Repository } from '@vmkeep/repository';

/** Commits one point to `repo` holding each image file (any format openImage reads) as its disk key; returns the point's id. */
export async function writeImagePoint(repo: Repository, disks: Record<string, string>, meta: Record<string, unknown>): Promise<string> {
  const writer = repo.beginPoint();
  for (const [key, image] of Object.entries(disks)) {
    const disk = await openImage(image);
    try {
      await writer.writeDisk(key, disk);
    } finally {
      await disk.close();
    }
  }
  return (await writer.commit(meta)).id;
}

/** Creates a repository at `repoPath` holding one point: the image file as disk `diskKey`; returns the point's id. */
export async function imagePoint(repoPath: string, image: string, meta: Record<string, unknown>, diskKey = 'disk-2000'): Promise<string> {
  return writeImagePoint(await Repository.init(repoPath), { [diskKey]: image }, meta);
}
