import { Column, Entity, Index, JoinColumn, ManyToOne, OneToMany, PrimaryGeneratedColumn } from 'typeorm';
import { HostEntity } from './host.entity';
import { VmDiskEntity } from './vm-disk.entity';

@Entity('vms')
@Index('IDX_vms_hostId_moref', ['hostId', 'moref'], { unique: true })
export class VmEntity {
  @PrimaryGeneratedColumn('uuid') id!: string;
  @Column({ type: 'varchar', length: 36 }) hostId!: string;
  @ManyToOne(() => HostEntity, { onDelete: 'CASCADE' }) @JoinColumn({ name: 'hostId', foreignKeyConstraintName: 'FK_vms_hostId' }) host?: HostEntity;
  /** Managed object id on the host (e.g. vm-42). */
  @Column({ type: 'varchar', length: 64 }) moref!: string;
  @Column({ type: 'varchar', length: 64, nullable: true }) instanceUuid!: string | null;
  @Column({ type: 'varchar', length: 255 }) name!: string;
  @Column({ type: 'varchar', length: 32, nullable: true }) powerState!: string | null;
  @Column({ type: 'varchar', length: 32, nullable: true }) toolsStatus!: string | null;
  @Column({ type: 'varchar', length: 64, nullable: true }) guestId!: string | null;
  @Column({ type: 'varchar', length: 255, nullable: true }) datacenter!: string | null;
  @Column({ type: 'varchar', length: 255, nullable: true }) cluster!: string | null;
  @Column({ type: 'varchar', length: 255, nullable: true }) esxHost!: string | null;
  /** Set when the last inventory sync no longer found the VM. */
  @Column({ type: 'boolean', default: false }) missing!: boolean;
  @Column({ type: 'datetime', nullable: true }) lastSeenAt!: Date | null;
  @OneToMany(() => VmDiskEntity, (d) => d.vm) disks?: VmDiskEntity[];
}
