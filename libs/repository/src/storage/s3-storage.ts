/**
 * ObjectStorage on an S3-compatible bucket (AWS, MinIO, Ceph RGW, s3rver, ...) through @aws-sdk/client-s3.
 * Objects are written whole with one PutObject (chunks are at most 8 MiB: no multipart), which S3 makes visible
 * atomically. Create-once uses a conditional write (If-None-Match: *) after a HEAD; a server that ignores the
 * condition leaves a small race between the HEAD and the write (documented in FORMAT.md).
 */
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  PutObjectLegalHoldCommand,
  PutObjectRetentionCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { TEMP_MARKER } from '../constants';
import { RepositoryError } from '../errors';
import { ObjectInfo, ObjectStorage, StorageError, checkKey, checkPrefix } from './storage';

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface S3StorageOptions {
  bucket: string;
  /** Key prefix of the repository inside the bucket ('' = bucket root). */
  prefix?: string;
  /** Endpoint URL of an S3-compatible server; default: AWS for the region. */
  endpoint?: string;
  /** Default 'us-east-1'. */
  region?: string;
  /** Default: the SDK's chain (environment, profile, instance role). */
  credentials?: S3Credentials;
  /** Path-style URLs (`endpoint/bucket/key`); default true when an endpoint is given. */
  forcePathStyle?: boolean;
  /** Attempts per request (the SDK retries throttling, 5xx and network errors with backoff); default 5. */
  maxAttempts?: number;
  /** A ready client (tests); its options win over the ones above. */
  client?: Pick<S3Client, 'send' | 'destroy'>;
}

interface S3ErrorShape {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

function status(err: unknown): number | undefined {
  return (err as S3ErrorShape | undefined)?.$metadata?.httpStatusCode;
}

/** The object is absent (a missing bucket is an error, not an absent object). */
function isNotFound(err: unknown): boolean {
  const e = err as S3ErrorShape | undefined;
  if (e?.name === 'NoSuchBucket' || e?.Code === 'NoSuchBucket') return false;
  return status(err) === 404 || e?.name === 'NoSuchKey' || e?.name === 'NotFound';
}

function isPreconditionFailed(err: unknown): boolean {
  const e = err as S3ErrorShape | undefined;
  return status(err) === 412 || e?.name === 'PreconditionFailed' || status(err) === 409;
}

export class S3Storage implements ObjectStorage {
  readonly description: string;
  private readonly client: Pick<S3Client, 'send' | 'destroy'>;
  private readonly bucket: string;
  private readonly root: string;
  private objectLock?: Promise<boolean>;

  constructor(opts: S3StorageOptions) {
    if (!opts.bucket) throw new RepositoryError('an S3 repository needs a bucket', 'INVALID_LOCATION');
    this.bucket = opts.bucket;
    const prefix = (opts.prefix ?? '').replace(/^\/+|\/+$/g, '');
    if (prefix) checkKey(prefix);
    this.root = prefix ? prefix + '/' : '';
    this.description = `s3://${this.bucket}/${prefix}${opts.endpoint ? ` at ${opts.endpoint}` : ''}`;
    this.client =
      opts.client ??
      new S3Client({
        endpoint: opts.endpoint,
        region: opts.region ?? 'us-east-1',
        credentials: opts.credentials,
        forcePathStyle: opts.forcePathStyle ?? opts.endpoint !== undefined,
        maxAttempts: opts.maxAttempts ?? 5,
      });
  }

  private full(key: string): string {
    return this.root + checkKey(key);
  }

  private async call<T>(operation: string, key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof RepositoryError) throw err;
      throw new StorageError(operation, key, this.description, err);
    }
  }

  async get(key: string): Promise<Buffer | undefined> {
    const Key = this.full(key);
    return this.call('get', key, async () => {
      try {
        const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
        if (!res.Body) return Buffer.alloc(0);
        return Buffer.from(await res.Body.transformToByteArray());
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    });
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const Key = this.full(key);
    return this.call('stat', key, async () => {
      try {
        const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
        return { key, size: res.ContentLength ?? 0, mtimeMs: res.LastModified?.getTime() ?? 0 };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    });
  }

  async put(key: string, data: Uint8Array | string): Promise<void> {
    const Key = this.full(key);
    await this.call('put', key, () => this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: data })));
  }

  async putIfAbsent(key: string, data: Uint8Array | string): Promise<boolean> {
    if (await this.stat(key)) return false;
    const Key = this.full(key);
    return this.call('put-if-absent', key, async () => {
      try {
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: data, IfNoneMatch: '*' }));
        return true;
      } catch (err) {
        if (isPreconditionFailed(err)) return false;
        throw err;
      }
    });
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    checkPrefix(prefix);
    return this.call('list', prefix, async () => {
      const out: ObjectInfo[] = [];
      let ContinuationToken: string | undefined;
      do {
        const res = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.root + prefix, ContinuationToken }),
        );
        for (const o of res.Contents ?? []) {
          if (!o.Key) continue;
          const key = o.Key.slice(this.root.length);
          if (key.split('/').some((part) => part.includes(TEMP_MARKER))) continue;
          out.push({ key, size: o.Size ?? 0, mtimeMs: o.LastModified?.getTime() ?? 0 });
        }
        ContinuationToken = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (ContinuationToken);
      return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    });
  }

  async delete(key: string): Promise<void> {
    const Key = this.full(key);
    await this.call('delete', key, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key })));
  }

  /** Copies the object onto itself (S3 requires new metadata for that), which sets its LastModified to now. */
  async touch(key: string): Promise<boolean> {
    const Key = this.full(key);
    return this.call('touch', key, async () => {
      try {
        await this.client.send(
          new CopyObjectCommand({
            Bucket: this.bucket,
            Key,
            CopySource: `${this.bucket}/${Key.split('/').map(encodeURIComponent).join('/')}`,
            MetadataDirective: 'REPLACE',
            Metadata: { touched: String(Date.now()) },
          }),
        );
        return true;
      } catch (err) {
        if (isNotFound(err)) return false;
        throw err;
      }
    });
  }

  /** Writes a probe object and reads its LastModified (the server's clock, 1 s resolution). */
  async now(): Promise<number> {
    const key = `locks/.clock${TEMP_MARKER}${process.pid}-${randomBytes(6).toString('hex')}`;
    await this.put(key, 'clock probe');
    try {
      const info = await this.stat(key);
      if (!info) throw new StorageError('now', key, this.description, new Error('probe object vanished'));
      return info.mtimeMs;
    } finally {
      await this.delete(key);
    }
  }

  /** Whether the bucket has Object Lock enabled (asked once; any failure = no). */
  objectLockEnabled(): Promise<boolean> {
    this.objectLock ??= this.client
      .send(new GetObjectLockConfigurationCommand({ Bucket: this.bucket }))
      .then((res) => res.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled')
      .catch(() => false);
    return this.objectLock;
  }

  /** COMPLIANCE retention until `retainUntil` (never shortened by S3 itself) and the legal hold flag. */
  async protect(key: string, retainUntil: Date, legalHold: boolean): Promise<boolean> {
    if (!(await this.objectLockEnabled())) return false;
    const Key = this.full(key);
    await this.call('protect', key, async () => {
      await this.client.send(
        new PutObjectRetentionCommand({
          Bucket: this.bucket,
          Key,
          Retention: { Mode: 'COMPLIANCE', RetainUntilDate: retainUntil },
        }),
      );
      await this.client.send(
        new PutObjectLegalHoldCommand({ Bucket: this.bucket, Key, LegalHold: { Status: legalHold ? 'ON' : 'OFF' } }),
      );
    });
    return true;
  }

  close(): Promise<void> {
    this.client.destroy();
    return Promise.resolve();
  }
}
