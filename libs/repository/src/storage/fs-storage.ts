/** ObjectStorage on a local (or shared) folder: atomic temp + fsync + rename, hard links for create-once. */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { fsyncDir, isTempName, tempPathFor, writeFileAtomic } from '../atomic';
import { fileSystemNow } from '../locks';
import { ObjectInfo, ObjectStorage, checkKey, checkPrefix } from './storage';

const isErrno = (err: unknown, ...codes: string[]) => codes.includes((err as NodeJS.ErrnoException | undefined)?.code ?? '');

export class FsStorage implements ObjectStorage {
  readonly description: string;

  constructor(readonly root: string) {
    this.root = path.resolve(root);
    this.description = this.root;
  }

  /** The file holding `key`. */
  pathOf(key: string): string {
    return path.join(this.root, ...checkKey(key).split('/'));
  }

  async get(key: string): Promise<Buffer | undefined> {
    try {
      return await fs.readFile(this.pathOf(key));
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR', 'EISDIR')) return undefined;
      throw err;
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const st = await fs.stat(this.pathOf(key));
      return st.isFile() ? { key, size: st.size, mtimeMs: st.mtimeMs } : undefined;
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
      throw err;
    }
  }

  async put(key: string, data: Uint8Array | string): Promise<void> {
    const file = this.pathOf(key);
    await this.ensureDir(path.dirname(file));
    await writeFileAtomic(file, data);
  }

  async putIfAbsent(key: string, data: Uint8Array | string): Promise<boolean> {
    const file = this.pathOf(key);
    await this.ensureDir(path.dirname(file));
    const temp = tempPathFor(file);
    try {
      const handle = await fs.open(temp, 'wx');
      try {
        await handle.writeFile(data);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.link(temp, file); // EEXIST instead of replacing
    } catch (err) {
      if (isErrno(err, 'EEXIST')) return false;
      throw err;
    } finally {
      await fs.rm(temp, { force: true });
    }
    await fsyncDir(path.dirname(file));
    return true;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    checkPrefix(prefix);
    const slash = prefix.lastIndexOf('/');
    const base = prefix.slice(0, slash + 1);
    const out: ObjectInfo[] = [];
    await this.walk(base, prefix.slice(slash + 1), out);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  private async walk(folderKey: string, namePrefix: string, out: ObjectInfo[]): Promise<void> {
    let entries;
    try {
      entries = await fs.readdir(path.join(this.root, ...folderKey.split('/').filter(Boolean)), { withFileTypes: true });
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return;
      throw err;
    }
    for (const e of entries) {
      if (!e.name.startsWith(namePrefix) || isTempName(e.name)) continue;
      const key = folderKey + e.name;
      if (e.isDirectory()) await this.walk(key + '/', '', out);
      else if (e.isFile()) {
        const info = await this.stat(key);
        if (info) out.push(info);
      }
    }
  }

  async delete(key: string): Promise<void> {
    await fs.rm(this.pathOf(key), { force: true });
  }

  async touch(key: string): Promise<boolean> {
    const now = new Date();
    try {
      await fs.utimes(this.pathOf(key), now, now);
      return true;
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return false;
      throw err;
    }
  }

  now(): Promise<number> {
    return fileSystemNow(this.root);
  }

  /** A local folder cannot enforce retention: the repository's archive rules are the protection. */
  protect(): Promise<boolean> {
    return Promise.resolve(false);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private async ensureDir(dir: string): Promise<void> {
    // A new folder must itself survive a crash before what is in it counts as stored.
    const created = await fs.mkdir(dir, { recursive: true });
    if (created) await fsyncDir(path.dirname(created));
  }
}
