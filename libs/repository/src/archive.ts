/**
 * Archive records: `archives/<pointId>/<revision>.json`. Every change is a new revision object created once
 * (ObjectStorage.putIfAbsent: in a folder a hard link of a finished temp file, made read-only; on S3 a
 * conditional put), so it either appears complete or not at all; no code
 * path rewrites or deletes one. The effective lock is computed over all revisions: retain-until is the latest
 * date any revision names (so it can be extended, never shortened), the legal hold is the newest revision's.
 * A legal hold can be released; retain-until never shortened.
 */
import { promises as fs } from 'node:fs';
import { ARCHIVES_DIR } from './constants';
import { ArchiveChangeError, RepositoryFormatError } from './errors';
import { isPointId } from './names';
import { FsStorage, type ObjectStorage } from './storage';

export interface ArchiveStatus {
  pointId: string;
  /** ISO time until which the point is locked. */
  retainUntil: string;
  legalHold: boolean;
  /** When the point was first archived. */
  archivedAt: string;
  revisions: number;
  /** Locked now: before retain-until or while on legal hold. */
  locked: boolean;
}

export interface ArchiveChange {
  /** ISO date or time (a date alone means 00:00 UTC of that day); required when first archiving. */
  retainUntil?: string | Date;
  legalHold?: boolean;
}

interface Revision {
  pointId: string;
  revision: number;
  retainUntil: string;
  legalHold: boolean;
  at: string;
}

const REVISION_PATTERN = /^(\d{6})\.json$/;
/** Attempts when another process adds a revision at the same moment. */
const MAX_RACE_RETRIES = 5;

function parseInstant(value: string | Date, what: string): Date {
  const d = value instanceof Date ? new Date(value.getTime()) : new Date(typeof value === 'string' ? value : NaN);
  if (Number.isNaN(d.getTime()) || (typeof value === 'string' && !/^\d{4}-\d{2}-\d{2}/.test(value))) {
    throw new ArchiveChangeError(`${what}: ${JSON.stringify(value)} is not an ISO date`);
  }
  return d;
}

function parseRevision(text: string, where: string, pointId: string, revision: number): Revision {
  const bad = (reason: string) => new RepositoryFormatError(where, reason);
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw bad('not valid JSON');
  }
  if (typeof v !== 'object' || v === null) throw bad('not a JSON object');
  if (v.pointId !== pointId || v.revision !== revision) throw bad('point id or revision does not match its file');
  if (typeof v.retainUntil !== 'string' || Number.isNaN(Date.parse(v.retainUntil))) throw bad('invalid retainUntil');
  if (typeof v.legalHold !== 'boolean' || typeof v.at !== 'string') throw bad('invalid legalHold or time');
  return { pointId, revision, retainUntil: v.retainUntil, legalHold: v.legalHold, at: v.at };
}

export class ArchiveRecords {
  constructor(readonly storage: ObjectStorage) {}

  /**
   * The point's archive status, or undefined when it was never archived. A damaged revision throws (fail
   * closed: nothing is deleted on the strength of a record that cannot be read).
   */
  async status(pointId: string, now = new Date()): Promise<ArchiveStatus | undefined> {
    const revisions = await this.revisions(pointId);
    if (!revisions.length) return undefined;
    const until = Math.max(...revisions.map((r) => Date.parse(r.retainUntil)));
    const legalHold = revisions[revisions.length - 1].legalHold;
    return {
      pointId,
      retainUntil: new Date(until).toISOString(),
      legalHold,
      archivedAt: revisions[0].at,
      revisions: revisions.length,
      locked: legalHold || now.getTime() < until,
    };
  }

  /** Every archived point's status. */
  async list(now = new Date()): Promise<ArchiveStatus[]> {
    const names = new Set((await this.storage.list(`${ARCHIVES_DIR}/`)).map((o) => o.key.split('/')[1]));
    const out: ArchiveStatus[] = [];
    for (const name of [...names].filter(isPointId).sort()) {
      const status = await this.status(name, now);
      if (status) out.push(status);
    }
    return out;
  }

  /**
   * Archives the point or changes its archive: retain-until may only move later, the legal hold may be set or
   * released. The caller checks that the point exists.
   */
  async change(pointId: string, change: ArchiveChange, now = new Date()): Promise<ArchiveStatus> {
    if (!isPointId(pointId)) throw new ArchiveChangeError(`invalid point id ${JSON.stringify(pointId)}`);
    if (change.legalHold !== undefined && typeof change.legalHold !== 'boolean') {
      throw new ArchiveChangeError('legalHold must be true or false');
    }
    for (let attempt = 0; ; attempt++) {
      const current = await this.status(pointId, now);
      let until: Date;
      if (change.retainUntil === undefined) {
        if (!current) throw new ArchiveChangeError(`point ${pointId} is not archived: a retain-until date is required`);
        until = new Date(current.retainUntil);
      } else {
        until = parseInstant(change.retainUntil, 'retain-until');
        if (current && until.getTime() < Date.parse(current.retainUntil)) {
          throw new ArchiveChangeError(
            `point ${pointId} is retained until ${current.retainUntil}: retain-until can be extended, never shortened`,
          );
        }
        if (!current && until.getTime() <= now.getTime()) {
          throw new ArchiveChangeError(`retain-until ${until.toISOString()} is not in the future`);
        }
      }
      const revision: Revision = {
        pointId,
        revision: (current?.revisions ?? 0) + 1,
        retainUntil: until.toISOString(),
        legalHold: change.legalHold ?? current?.legalHold ?? false,
        at: now.toISOString(),
      };
      if (await this.writeOnce(revision)) return (await this.status(pointId, now)) as ArchiveStatus;
      if (attempt >= MAX_RACE_RETRIES) throw new ArchiveChangeError(`point ${pointId}: archive changed concurrently, try again`);
    }
  }

  private pointPrefix(pointId: string): string {
    return `${ARCHIVES_DIR}/${pointId}/`;
  }

  private async revisions(pointId: string): Promise<Revision[]> {
    if (!isPointId(pointId)) return [];
    const prefix = this.pointPrefix(pointId);
    const out: Revision[] = [];
    for (const { key } of await this.storage.list(prefix)) {
      const m = REVISION_PATTERN.exec(key.slice(prefix.length));
      if (!m) continue;
      const data = await this.storage.get(key);
      const where = `archive record ${key} in ${this.storage.description}`;
      if (!data) throw new RepositoryFormatError(where, 'vanished while being read');
      out.push(parseRevision(data.toString('utf8'), where, pointId, Number(m[1])));
    }
    return out;
  }

  /**
   * Creates the revision object if none of that number exists (create-once); false when another writer got
   * there first. In a folder the file is also made read-only.
   */
  private async writeOnce(revision: Revision): Promise<boolean> {
    const key = `${this.pointPrefix(revision.pointId)}${String(revision.revision).padStart(6, '0')}.json`;
    if (!(await this.storage.putIfAbsent(key, JSON.stringify(revision) + '\n'))) return false;
    if (this.storage instanceof FsStorage) await fs.chmod(this.storage.pathOf(key), 0o444);
    return true;
  }
}
