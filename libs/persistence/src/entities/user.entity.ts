import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';
import type { Role } from '@vmkeep/contracts';

@Entity('users')
export class UserEntity {
  @PrimaryGeneratedColumn('uuid') id!: string;
  @Index('IDX_users_username', { unique: true }) @Column({ type: 'varchar', length: 128 }) username!: string;
  /** scrypt$N$r$p$salt$hash (see libs/persistence/src/secrets.ts). */
  @Column({ type: 'varchar', length: 255 }) passwordHash!: string;
  @Column({ type: 'varchar', length: 16 }) role!: Role;
  @Column({ type: 'boolean', default: false }) disabled!: boolean;
  @CreateDateColumn() createdAt!: Date;
}
