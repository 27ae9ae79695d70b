import { Body, Controller, HttpCode, Logger, Param, ParseIntPipe, ParseUUIDPipe, Post, Res } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { ApiBearerAuth, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { VmkeepError } from '@vmkeep/contracts';
import { HostsService } from '@vmkeep/inventory';
import { VmEntity } from '@vmkeep/persistence';
import { FileBrowseService, normalizeGuestPath, restoreToGuest, type GuestRestoreProgress } from '@vmkeep/restore';
import { AuditService } from '../audit/audit.service';
import { AuthUser, CurrentUser, Roles } from '../auth/auth.decorators';
import { RestoreToGuestRequestDto, RestoreToGuestResultDto } from './guest-restore.dto';

/** How often a long restore into a guest logs its progress. */
const PROGRESS_LOG_MS = 10_000;

/**
 * Restore files into a running guest (operator or admin): the item is streamed from the restore point into the
 * VM through vSphere guest operations with the guest credentials given in the request (used for that request
 * only: never stored, logged or audited). Audit-logged as `files.restore-to-guest`.
 */
@ApiTags('files')
@ApiBearerAuth()
@Controller('restore-points/:id/volumes')
export class GuestRestoreController {
  private readonly logger = new Logger('GuestRestore');

  constructor(
    private readonly files: FileBrowseService,
    private readonly hosts: HostsService,
    private readonly audit: AuditService,
    @InjectRepository(VmEntity) private readonly vms: Repository<VmEntity>,
  ) {}

  @Post(':vol/restore-to-guest')
  @HttpCode(200)
  @Roles('operator')
  @ApiOkResponse({ type: RestoreToGuestResultDto })
  async restoreToGuest(
    @Param('id', ParseUUIDPipe) id: string,
    @Param('vol', ParseIntPipe) vol: number,
    @Body() body: RestoreToGuestRequestDto,
    @CurrentUser() user: AuthUser,
    @Res({ passthrough: true }) res: ServerResponse,
  ): Promise<RestoreToGuestResultDto> {
    const path = normalizeGuestPath(body.path);
    const vmId = body.vmId ?? (await this.files.vmIdOf(id));
    const vm = await this.vms.findOneBy({ id: vmId });
    if (!vm) throw new VmkeepError(`VM ${vmId} not found`, 'not_found');
    const detail = { vmId, volume: vol, path, guestPath: body.guestPath, guestUser: body.guestUser, overwrite: body.overwrite ?? false };
    // A client that goes away (Ctrl-C in the CLI) stops the restore between files and mid-upload.
    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) abort.abort(new VmkeepError('the client went away: the restore into the guest was stopped', 'conflict'));
    };
    res.on('close', onClose);
    const session = await this.hosts.sessionFor(vm.hostId);
    try {
      if (!session.guestFiles) throw new VmkeepError(`host of VM ${vm.name} does not offer guest operations`, 'unsupported');
      const guest = session.guestFiles(vm.moref, { username: body.guestUser, password: body.guestPassword });
      let logged = Date.now();
      const onProgress = (p: GuestRestoreProgress) => {
        if (Date.now() - logged < PROGRESS_LOG_MS) return;
        logged = Date.now();
        this.logger.log(`restore point ${id} volume ${vol} → VM ${vm.name}: ${p.files} file(s), ${p.folders} folder(s), ${p.bytes} bytes so far`);
      };
      const result = await this.files.use(id, (b) =>
        restoreToGuest(guest, { fs: b.fileSystem(vol), sourcePath: path, guestFolder: body.guestPath, overwrite: body.overwrite, onProgress, signal: abort.signal }),
      );
      for (const s of result.skipped) this.logger.warn(`restore point ${id} volume ${vol} → VM ${vm.name}: skipped ${JSON.stringify(s.path)}: ${s.reason}`);
      await this.audit.record(user, 'files.restore-to-guest', id, { ...detail, target: result.target, files: result.files, bytes: result.bytes });
      return { ...result, vmId };
    } catch (error) {
      await this.audit.record(user, 'files.restore-to-guest', id, { ...detail, error: error instanceof Error ? error.message : String(error) });
      throw error;
    } finally {
      res.off('close', onClose);
      await session.logout().catch(() => undefined);
    }
  }
}
