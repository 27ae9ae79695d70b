import { Column, CreateDateColumn, Entity, Index, JoinColumn, ManyToOne, PrimaryGeneratedColumn } from 'typeorm';
import { UserEntity } from './user.entity';

/** A bearer token: 'session' tokens come from login and expire; 'api' tokens are created by users. */
@Entity('api_tokens')
export class ApiTokenEntity {
  @PrimaryGeneratedColumn('uuid') id!: string;
  @Column({ type: 'varchar', length: 36 }) userId!: string;
  @ManyToOne(() => UserEntity, { onDelete: 'CASCADE' }) @JoinColumn({ name: 'userId', foreignKeyConstraintName: 'FK_api_tokens_userId' }) user?: UserEntity;
  @Column({ type: 'varchar', length: 128 }) name!: string;
  @Column({ type: 'varchar', length: 16 }) kind!: 'session' | 'api';
  /** SHA-256 (hex) of the token; the token itself is never stored. */
  @Index('IDX_api_tokens_tokenHash', { unique: true }) @Column({ type: 'varchar', length: 64 }) tokenHash!: string;
  @Column({ type: 'datetime', nullable: true }) expiresAt!: Date | null;
  @Column({ type: 'datetime', nullable: true }) lastUsedAt!: Date | null;
  @CreateDateColumn() createdAt!: Date;
}
