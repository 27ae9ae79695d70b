import { Body, Controller, Delete, Get, HttpCode, Param, ParseUUIDPipe, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiNotFoundResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { InstantSessionsService, type InstantSessionListing } from '@vmkeep/restore';
import { AuditService } from '../audit/audit.service';
import { AuthUser, CurrentUser, hasRole, Roles } from '../auth/auth.decorators';
import { CloseInstantSessionDto, ClosedInstantSessionDto, InstantSessionDto, StartInstantSessionDto } from './instant-sessions.dto';

/** Instant restore: serve a restore point's disk over NBD (read-only, or writable through an overlay). */
@ApiTags('instant-sessions')
@ApiBearerAuth()
@Controller('instant-sessions')
export class InstantSessionsController {
  constructor(
    private readonly sessions: InstantSessionsService,
    private readonly audit: AuditService,
  ) {}

  @Roles('operator')
  @Post()
  @ApiCreatedResponse({ type: InstantSessionDto })
  async start(@CurrentUser() user: AuthUser, @Body() body: StartInstantSessionDto): Promise<InstantSessionDto> {
    const session = await this.sessions.start(body.pointId, body.diskKey, { writable: body.writable, ttlMinutes: body.ttlMinutes, hydrate: body.hydrate });
    await this.audit.record(user, 'instant.start', session.id, { pointId: session.pointId, diskKey: session.diskKey, writable: session.writable });
    return session;
  }

  /**
   * Open sessions (also while closing, with migration progress), then sessions lost when their API process
   * stopped, until they would have expired. URLs carry access tokens, so viewers get them without.
   */
  @Get()
  @ApiOkResponse({ type: [InstantSessionDto] })
  async list(@CurrentUser() user: AuthUser): Promise<InstantSessionDto[]> {
    return (await this.sessions.list()).map((s) => forCaller(user, s));
  }

  /** A session in any state (a closed one too, from its row). */
  @Get(':id')
  @ApiOkResponse({ type: InstantSessionDto })
  @ApiNotFoundResponse()
  async get(@CurrentUser() user: AuthUser, @Param('id', ParseUUIDPipe) id: string): Promise<InstantSessionDto> {
    return forCaller(user, await this.sessions.get(id));
  }

  /**
   * Disconnects clients; discards the overlay, or first writes the merged disk to `migrateTo` or uploads it to
   * `datastore` (progress: GET the session meanwhile). If that fails the session stays open. A lost session is
   * dismissed.
   */
  @Roles('operator')
  @Delete(':id')
  @HttpCode(200)
  @ApiOkResponse({ type: ClosedInstantSessionDto })
  @ApiNotFoundResponse()
  async close(
    @CurrentUser() user: AuthUser,
    @Param('id', ParseUUIDPipe) id: string,
    @Body() body: CloseInstantSessionDto,
  ): Promise<ClosedInstantSessionDto> {
    const result = await this.sessions.close(id, { migrateTo: body?.migrateTo, format: body?.format, datastore: body?.datastore });
    await this.audit.record(user, 'instant.close', id, { migrated: result.migrated ?? null });
    return result;
  }
}

function forCaller(user: AuthUser, s: InstantSessionListing): InstantSessionDto {
  return hasRole(user.role, 'operator') ? s : { ...s, url: null };
}
