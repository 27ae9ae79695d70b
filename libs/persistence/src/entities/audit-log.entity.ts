import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

@Entity('audit_log')
@Index('IDX_audit_log_at', ['at'])
export class AuditLogEntity {
  @PrimaryGeneratedColumn('uuid') id!: string;
  @CreateDateColumn() at!: Date;
  @Column({ type: 'varchar', length: 36, nullable: true }) userId!: string | null;
  @Column({ type: 'varchar', length: 128, nullable: true }) username!: string | null;
  /** e.g. "host.create", "backup.start", "auth.login.failed". */
  @Column({ type: 'varchar', length: 64 }) action!: string;
  @Column({ type: 'varchar', length: 255, nullable: true }) target!: string | null;
  /** Never holds secrets. */
  @Column({ type: 'simple-json', nullable: true }) detail!: Record<string, unknown> | null;
}
