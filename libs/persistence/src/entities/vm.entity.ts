import { Column, Entity, Index, JoinColumn, ManyToOne, OneToMany, PrimaryGeneratedColumn } from 'typeorm';
import { HostEntity } from './host.entity';
import { VmDiskEntity } from './vm-disk.entity';

/** A vSphere tag on a VM. */
export interface VmTagLabel {
  category: string;
  name: string;
}

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
  /** Inventory path of the VM's folder ("/DC0/vm/prod"), for policy selection. */
  @Column({ type: 'varchar', length: 1024, nullable: true }) folderPath!: string | null;
  /** Inventory path of the VM's resource pool ("/DC0/host/C0/Resources/prod"). */
  @Column({ type: 'varchar', length: 1024, nullable: true }) resourcePool!: string | null;
  /** vSphere tags (category and name); null when the host has no tagging service or before the first sync. */
  @Column({ type: 'simple-json', nullable: true }) tags!: VmTagLabel[] | null;
  /** Custom attributes by name. */
  @Column({ type: 'simple-json', nullable: true }) customAttributes!: Record<string, string> | null;
  /** Set when the last inventory sync no longer found the VM. */
  @Column({ type: 'boolean', default: false }) missing!: boolean;
  @Column({ type: 'datetime', nullable: true }) lastSeenAt!: Date | null;
  @OneToMany(() => VmDiskEntity, (d) => d.vm) disks?: VmDiskEntity[];
}
