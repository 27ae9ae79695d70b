// Test helper: restore points written straight into a repository (no appliance, no vSphere).
import { openImage } from '@vmkeep/disk-formats';
import { Repository } from '@vmkeep/repository';

/** Creates a repository at `repoPath` holding one point: the image file as disk `diskKey`; returns the point's id. */
export async function imagePoint(repoPath: string, image: string, meta: Record<string, unknown>, diskKey = 'disk-2000'): Promise<string> {
  const repo = await Repository.init(repoPath);
  const writer = repo.beginPoint();
  const disk = await openImage(image);
  try {
    await writer.writeDisk(diskKey, disk);
  } finally {
    await disk.close();
  }
  return (await writer.commit(meta)).id;
}
