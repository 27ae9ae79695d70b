import { Body, Controller, Get, HttpCode, Param, ParseUUIDPipe, Post, Query } from '@nestjs/common';
import { ApiAcceptedResponse, ApiBearerAuth, ApiConflictResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { InjectRepository } from '@nestjs/typeorm';
import { Like, Repository } from 'typeorm';
import { VmkeepError } from '@vmkeep/contracts';
import { VmDiskEntity, VmEntity } from '@vmkeep/persistence';
import { AuditService } from '../audit/audit.service';
import { AuthUser, CurrentUser, Roles } from '../auth/auth.decorators';
import { BackupRequestDto, JobDto } from '../jobs/jobs.dto';
import { JobsService } from '../jobs/jobs.service';
import { RestorePointsService } from '../restore-points/restore-points.service';
import { VmDetailDto, VmDto, VmsQueryDto } from './vms.dto';

@ApiTags('vms')
@ApiBearerAuth()
@Controller('vms')
export class VmsController {
  constructor(
    @InjectRepository(VmEntity) private readonly vms: Repository<VmEntity>,
    @InjectRepository(VmDiskEntity) private readonly disks: Repository<VmDiskEntity>,
    private readonly jobs: JobsService,
    private readonly points: RestorePointsService,
    private readonly audit: AuditService,
  ) {}

  @Get()
  @ApiOkResponse({ type: [VmDto] })
  async list(@Query() query: VmsQueryDto): Promise<VmDto[]> {
    const where = {
      ...(query.hostId ? { hostId: query.hostId } : {}),
      // LIKE wildcards in the filter only widen the match; they cannot reach anything a viewer may not list anyway.
      ...(query.name ? { name: Like(`%${query.name}%`) } : {}),
    };
    const vms = await this.vms.find({ where, order: { name: 'ASC' } });
    const totals = await this.diskTotals(vms.map((v) => v.id));
    return vms.map((v) => vmView(v, totals.get(v.id) ?? NO_DISKS));
  }

  /** The VM with its disks and its newest restore point. */
  @Get(':id')
  @ApiOkResponse({ type: VmDetailDto })
  async get(@Param('id', ParseUUIDPipe) id: string): Promise<VmDetailDto> {
    const vm = await this.vms.findOneBy({ id });
    if (!vm) throw new VmkeepError(`VM ${id} not found`, 'not_found');
    const disks = await this.disks.find({ where: { vmId: id }, order: { deviceKey: 'ASC' } });
    const totals = { diskCount: disks.length, capacityBytes: disks.reduce((sum, d) => sum + d.capacityBytes, 0) };
    return {
      ...vmView(vm, totals),
      disks: disks.map((d) => ({ deviceKey: d.deviceKey, label: d.label, capacityBytes: d.capacityBytes, fileName: d.fileName, datastore: d.datastore, diskMode: d.diskMode })),
      lastRestorePoint: await this.points.latestFor(id),
    };
  }

  /** Queues a backup of the VM now. */
  @Roles('operator')
  @Post(':id/backup')
  @HttpCode(202)
  @ApiAcceptedResponse({ type: JobDto })
  @ApiConflictResponse({ description: 'The VM already has a queued or running backup, or is missing on its host' })
  async backup(@CurrentUser() user: AuthUser, @Param('id', ParseUUIDPipe) id: string, @Body() body: BackupRequestDto): Promise<JobDto> {
    const { job, vm } = await this.jobs.startBackup(id, body.quiesce ?? false, user, body.repositoryId);
    await this.audit.record(user, 'backup.start', job.id, {
      vmId: vm.id,
      vm: vm.name,
      quiesce: body.quiesce ?? false,
      ...(body.repositoryId ? { repositoryId: body.repositoryId } : {}),
    });
    return job;
  }

  /** Disk count and total capacity of each of the VMs, in one grouped query (VMs without disks are absent). */
  private async diskTotals(vmIds: string[]): Promise<Map<string, DiskTotals>> {
    if (vmIds.length === 0) return new Map();
    const rows = await this.disks
      .createQueryBuilder('d')
      .select('d.vmId', 'vmId')
      .addSelect('COUNT(*)', 'diskCount')
      .addSelect('SUM(d.capacityBytes)', 'capacityBytes')
      .where('d.vmId IN (:...vmIds)', { vmIds })
      .groupBy('d.vmId')
      .getRawMany<{ vmId: string; diskCount: number | string; capacityBytes: number | string }>();
    // MySQL returns COUNT and SUM of bigint columns as strings.
    return new Map(rows.map((r) => [r.vmId, { diskCount: Number(r.diskCount), capacityBytes: Number(r.capacityBytes) }]));
  }
}

type DiskTotals = Pick<VmDto, 'diskCount' | 'capacityBytes'>;
const NO_DISKS: DiskTotals = { diskCount: 0, capacityBytes: 0 };

function vmView(v: VmEntity, totals: DiskTotals): VmDto {
  return {
    id: v.id,
    hostId: v.hostId,
    moref: v.moref,
    name: v.name,
    instanceUuid: v.instanceUuid,
    powerState: v.powerState,
    toolsStatus: v.toolsStatus,
    guestId: v.guestId,
    datacenter: v.datacenter,
    cluster: v.cluster,
    esxHost: v.esxHost,
    folderPath: v.folderPath,
    resourcePool: v.resourcePool,
    tags: v.tags,
    customAttributes: v.customAttributes,
    missing: v.missing,
    lastSeenAt: v.lastSeenAt,
    ...totals,
  };
}
