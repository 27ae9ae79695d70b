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
export * from './instant-session.entity';
export * from './repository.entity';
export * from './webhook.entity';
import { ApiTokenEntity } from './api-token.entity';
import { AuditLogEntity } from './audit-log.entity';
import { HostEntity } from './host.entity';
import { InstantSessionEntity } from './instant-session.entity';
import { JobEntity } from './job.entity';
import { PolicyRunEntity } from './policy-run.entity';
import { PolicyEntity } from './policy.entity';
import { RepositoryEntity } from './repository.entity';
import { RestorePointEntity } from './restore-point.entity';
import { UserEntity } from './user.entity';
import { VmDiskEntity } from './vm-disk.entity';
import { VmEntity } from './vm.entity';
import { WebhookDeliveryEntity, WebhookEntity } from './webhook.entity';

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
  RepositoryEntity,
  WebhookEntity,
  WebhookDeliveryEntity,
  InstantSessionEntity,
];
