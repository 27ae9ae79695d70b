import { Column, Entity, Index, JoinColumn, ManyToOne, PrimaryGeneratedColumn } from 'typeorm';
import { bigintToNumber } from './columns';
import { VmEntity } from './vm.entity';

@Entity('vm_disks')
@Index('IDX_vm_disks_vmId_deviceKey', ['vmId', 'deviceKey'], { unique: true })
export class VmDiskEntity {
  @PrimaryGeneratedColumn('uuid') id!: string;
  @Column({ type: 'varchar', length: 36 }) vmId!: string;
  @ManyToOne(() => VmEntity, (v) => v.disks, { onDelete: 'CASCADE' }) @JoinColumn({ name: 'vmId', foreignKeyConstraintName: 'FK_vm_disks_vmId' }) vm?: VmEntity;
  /** vSphere device key (e.g. 2000). */
  @Column({ type: 'int' }) deviceKey!: number;
  @Column({ type: 'varchar', length: 128 }) label!: string;
  @Column({ type: 'bigint', transformer: bigintToNumber }) capacityBytes!: number;
  /** Backing file, "[datastore] folder/disk.vmdk". */
  @Column({ type: 'varchar', length: 1024 }) fileName!: string;
  @Column({ type: 'varchar', length: 255, nullable: true }) datastore!: string | null;
  @Column({ type: 'varchar', length: 64, nullable: true }) diskMode!: string | null;
}
