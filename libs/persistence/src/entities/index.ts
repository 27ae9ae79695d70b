export * from './user.entity';
export * from './api-token.entity';
export * from './host.entity';
export * from './vm.entity';
export * from './vm-disk.entity';
export * from './job.entity';
export * from './restore-point.entity';
export * from './audit-log.entity';
export * from './policy.entity';
export * from './policy-run.entity';
import { ApiTokenEntity } from './api-token.entity';
import { AuditLogEntity } from './audit-log.entity';
import { HostEntity } from './host.entity';
import { JobEntity } from './job.entity';
import { PolicyRunEntity } from './policy-run.entity';
import { PolicyEntity } from './policy.entity';
import { RestorePointEntity } from './restore-point.entity';
import { UserEntity } from './user.entity';
import { VmDiskEntity } from './vm-disk.entity';
import { VmEntity } from './vm.entity';

export const ENTITIES = [
  UserEntity,
  ApiTokenEntity,
  HostEntity,
  VmEntity,
  VmDiskEntity,
  JobEntity,
  RestorePointEntity,
  AuditLogEntity,
  PolicyEntity,
  PolicyRunEntity,
];
