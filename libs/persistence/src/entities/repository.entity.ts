import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/** How to reach the S3-compatible server of an `s3://BUCKET/PREFIX` repository (the secret key is sealed apart). */
export interface RepositoryS3Settings {
  /** http(s) URL of an S3-compatible server; absent = AWS for the region. */
  endpoint?: string;
  region: string;
  forcePathStyle: boolean;
  /** Absent = the AWS SDK's own credential chain of the appliance (profile, instance role). */
  accessKeyId?: string;
}

/**
 * A repository the appliance writes to or restores from: a folder or `s3://BUCKET/PREFIX`. Secrets (the
 * passphrase of an encrypted repository, the S3 secret key) are stored only sealed with the appliance key.
 */
@Entity('repositories')
export class RepositoryEntity {
  @PrimaryGeneratedColumn('uuid') id!: string;
  @Index('IDX_repositories_name', { unique: true }) @Column({ type: 'varchar', length: 128 }) name!: string;
  /** Absolute folder path, or `s3://BUCKET/PREFIX`. */
  @Column({ type: 'varchar', length: 1024 }) location!: string;
  @Column({ type: 'boolean', default: false }) encrypted!: boolean;
  /** SecretBox-sealed passphrase; null for an unencrypted repository. */
  @Column({ type: 'text', nullable: true }) passphraseSealed!: string | null;
  /** S3 connection settings (no secrets); null for a folder. */
  @Column({ type: 'simple-json', nullable: true }) s3!: RepositoryS3Settings | null;
  /** SecretBox-sealed JSON `{ secretAccessKey, sessionToken? }`; null when the S3 settings carry no key. */
  @Column({ type: 'text', nullable: true }) s3SecretSealed!: string | null;
  /** Backups go here unless their policy or request names another repository. */
  @Column({ type: 'boolean', default: false }) isDefault!: boolean;
  @CreateDateColumn() createdAt!: Date;
}
