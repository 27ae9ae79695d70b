/**
 * "Migrate to production" onto a vSphere datastore: the merged disk of an instant-restore session becomes a vmfs
 * descriptor + flat extent in a new folder, uploaded through the datastore HTTP interface (the same code a full VM
 * restore uses). The datastore, its space and the folder name are checked before any data moves; a failed upload
 * removes the folder again.
 */
import { DiskError, type Disk } from '@vmkeep/disk';
import type { VimSession } from '@vmkeep/vsphere';
import { flatPathOf, uploadDisk, type DiskUpload } from '../vm/disk-upload';
import { VmRestoreError } from '../vm/errors';
import type { Deliver } from './instant-sessions';

export interface DatastoreTarget {
  datastore: string;
  /** New folder on the datastore; the disk becomes "<folder>/<folder>.vmdk" + "<folder>/<folder>-flat.vmdk". */
  folder: string;
  thin?: boolean;
  adapterType?: DiskUpload['adapterType'];
}

const FOLDER = /^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/;

/** Refuses a folder name that is not a plain name (the check needs no connection). */
export function checkDatastoreTarget(target: DatastoreTarget): void {
  if (!FOLDER.test(target.folder)) {
    throw new VmRestoreError('folder must be a plain name (letters, digits, ".", "_", "-"; at most 80 characters)', 'invalid');
  }
  if (!target.datastore.trim()) throw new VmRestoreError('datastore must not be empty', 'invalid');
}

/** A Deliver for InstantSessions.close that uploads the merged disk with `session`; `done` runs afterwards either way. */
export function datastoreDelivery(session: VimSession, target: DatastoreTarget, done: () => Promise<void>): Deliver {
  checkDatastoreTarget(target);
  const descriptorPath = `${target.folder}/${target.folder}.vmdk`;
  const label = `[${target.datastore}] ${descriptorPath}`;
  return {
    target: label,
    run: async (disk: Disk, onBytes: (bytes: number) => void) => {
      try {
        const inventory = await session.inventory();
        const ds = inventory.datastores.find((d) => d.name === target.datastore);
        if (!ds) {
          const names = inventory.datastores.map((d) => d.name).join(', ');
          throw new VmRestoreError(`no datastore named "${target.datastore}" on the host (it has: ${names})`, 'invalid');
        }
        if (!target.thin && ds.freeSpace !== undefined && ds.freeSpace < disk.size) {
          throw new VmRestoreError(`datastore "${ds.name}" has ${ds.freeSpace} bytes free; the disk needs ${disk.size}`, 'invalid');
        }
        const datacenter = inventory.datacenters.find((d) => d.name === ds.datacenter);
        if (!datacenter) throw new VmRestoreError(`datacenter "${ds.datacenter}" of datastore "${ds.name}" not found`, 'invalid');
        const folder = `[${ds.name}] ${target.folder}`;
        for (const file of [descriptorPath, flatPathOf(descriptorPath)]) {
          if (await fileExists(session, datacenter.path, ds.name, file)) {
            throw new VmRestoreError(`[${ds.name}] ${file} already exists on the datastore`, 'conflict');
          }
        }
        await session.makeDirectory(folder, datacenter.ref).catch((error: unknown) => {
          const message = error instanceof Error ? error.message : String(error);
          throw /FileAlreadyExists|already exists/i.test(message)
            ? new VmRestoreError(`folder ${folder} already exists on the datastore`, 'conflict')
            : error;
        });
        try {
          const upload: DiskUpload = {
            datacenterPath: datacenter.path,
            datastore: ds.name,
            descriptorPath,
            thin: target.thin ?? false,
            adapterType: target.adapterType ?? 'lsilogic',
          };
          await uploadDisk(session, disk, upload, onBytes);
        } catch (err) {
          await session.deleteDatastoreFile(folder, datacenter.ref).catch(() => undefined);
          throw err;
        }
        return { path: label, format: 'vmfs', bytes: disk.size };
      } finally {
        await done();
      }
    },
  };
}

/** Whether a file is on the datastore: its first bytes are fetched through the datastore HTTP interface. */
async function fileExists(session: VimSession, datacenterPath: string, datastore: string, file: string): Promise<boolean> {
  try {
    const disk = await session.openDisk(datacenterPath, { key: 0, label: file, capacityBytes: 0, fileName: `[${datastore}] ${file}`, datastore });
    await disk.close();
    return true;
  } catch (err) {
    if (err instanceof DiskError) return !/HTTP 404/.test(err.message);
    throw err;
  }
}
