import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

@Entity('hosts')
export class HostEntity {
  @PrimaryGeneratedColumn('uuid') id!: string;
  @Index('IDX_hosts_name', { unique: true }) @Column({ type: 'varchar', length: 128 }) name!: string;
  /** https://vcenter.example.com (the SDK path /sdk is appended by the client). */
  @Column({ type: 'varchar', length: 512 }) url!: string;
  @Column({ type: 'varchar', length: 255 }) username!: string;
  /** Password sealed with the appliance secret key (AES-256-GCM), see secrets.ts. */
  @Column({ type: 'text' }) passwordSealed!: string;
  /** Accept any TLS certificate. */
  @Column({ type: 'boolean', default: false }) insecure!: boolean;
  /** Pinned SHA-256 (or SHA-1) fingerprint of the host certificate, hex with or without colons. */
  @Column({ type: 'varchar', length: 128, nullable: true }) thumbprint!: string | null;
  /** 'vcenter' or 'esxi', learned at connection time. */
  @Column({ type: 'varchar', length: 16, nullable: true }) apiType!: string | null;
  @Column({ type: 'varchar', length: 32, nullable: true }) apiVersion!: string | null;
  @Column({ type: 'datetime', nullable: true }) lastSyncAt!: Date | null;
  @Column({ type: 'text', nullable: true }) lastError!: string | null;
  @CreateDateColumn() createdAt!: Date;
  @UpdateDateColumn() updatedAt!: Date;
}
