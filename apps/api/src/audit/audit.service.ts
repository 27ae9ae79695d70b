import { Injectable, Logger } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { AuditLogEntity } from '@vmkeep/persistence';

export interface AuditActor {
  id: string | null;
  username: string | null;
}

/** Writes the audit trail. `detail` must never hold secrets. A failing write is logged, never fatal to the action. */
@Injectable()
export class AuditService {
  private readonly logger = new Logger('Audit');

  constructor(@InjectRepository(AuditLogEntity) private readonly entries: Repository<AuditLogEntity>) {}

  async record(actor: AuditActor | null, action: string, target: string | null, detail?: Record<string, unknown>): Promise<void> {
    try {
      const entry = Object.assign(new AuditLogEntity(), {
        userId: actor?.id ?? null,
        username: actor?.username ?? null,
        action,
        target,
        detail: detail ?? null,
      });
      await this.entries.save(entry);
    } catch (err) {
      this.logger.error(`could not write audit entry ${action}: ${(err as Error).message}`);
    }
  }

  async list(limit: number, offset: number): Promise<{ items: AuditLogEntity[]; total: number }> {
    const [items, total] = await this.entries.findAndCount({ order: { at: 'DESC', id: 'DESC' }, take: limit, skip: offset });
    return { items, total };
  }
}
