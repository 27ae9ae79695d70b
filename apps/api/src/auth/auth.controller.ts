import { Body, Controller, Delete, Get, HttpCode, Ip, Logger, Param, ParseUUIDPipe, Post, UnauthorizedException } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiCreatedResponse,
  ApiForbiddenResponse,
  ApiOkResponse,
  ApiTags,
  ApiTooManyRequestsResponse,
  ApiUnauthorizedResponse,
} from '@nestjs/swagger';
import { VmkeepError } from '@vmkeep/contracts';
import { AuditService } from '../audit/audit.service';
import { TooManyRequestsException } from '../common/too-many-requests';
import { AuthUser, CurrentUser, Public } from './auth.decorators';
import {
  ChangePasswordDto,
  CreatedTokenDto,
  CreateTokenDto,
  LoginDto,
  LoginResponseDto,
  PasswordChangedDto,
  TokenDto,
  UserSummaryDto,
} from './auth.dto';
import { AuthService, LoginFailedError } from './auth.service';
import { LoginThrottle } from './login-throttle';

const THROTTLED = 'too many failed logins; try again later';

@ApiTags('auth')
@ApiBearerAuth()
@Controller('auth')
export class AuthController {
  private readonly logger = new Logger('Auth');

  constructor(
    private readonly auth: AuthService,
    private readonly audit: AuditService,
    private readonly throttle: LoginThrottle,
  ) {}

  /** Exchanges a username and password for a session token. */
  @Public()
  @Post('login')
  @HttpCode(200)
  @ApiOkResponse({ type: LoginResponseDto })
  @ApiUnauthorizedResponse({ description: 'Wrong username or password' })
  @ApiTooManyRequestsResponse({ description: 'Too many failed logins for this username or client address (see Retry-After)' })
  async login(@Body() body: LoginDto, @Ip() address: string): Promise<LoginResponseDto> {
    const wait = this.throttle.waitMs(body.username, address);
    if (wait > 0) throw new TooManyRequestsException(THROTTLED, wait);
    try {
      const result = await this.auth.login(body.username, body.password);
      this.throttle.succeeded(body.username);
      await this.audit.record(result.user, 'auth.login', result.user.username, { address });
      return result;
    } catch (err) {
      if (!(err instanceof LoginFailedError)) throw err;
      await this.recordFailure({ id: null, username: body.username }, 'auth.login.failed', address, err.reason);
      throw new UnauthorizedException(err.message);
    }
  }

  /** Changes the caller's own password (the current one is required); the caller's other sessions end. */
  @Post('password')
  @HttpCode(200)
  @ApiOkResponse({ type: PasswordChangedDto })
  @ApiForbiddenResponse({ description: 'The current password is wrong' })
  @ApiTooManyRequestsResponse({ description: 'Too many wrong current passwords (see Retry-After)' })
  async changePassword(@CurrentUser() user: AuthUser, @Body() body: ChangePasswordDto, @Ip() address: string): Promise<PasswordChangedDto> {
    const wait = this.throttle.waitMs(user.username, address);
    if (wait > 0) throw new TooManyRequestsException(THROTTLED, wait);
    try {
      const sessionsRevoked = await this.auth.changeOwnPassword(user, body.currentPassword, body.newPassword);
      this.throttle.succeeded(user.username);
      await this.audit.record(user, 'user.password.change', user.username, { sessionsRevoked });
      return { sessionsRevoked };
    } catch (err) {
      if (err instanceof VmkeepError && err.code === 'forbidden') {
        await this.recordFailure(user, 'user.password.change.failed', address, 'wrong-password');
      }
      throw err;
    }
  }

  /** Counts a failed password check against the username and address, auditing it and any lockout it causes. */
  private async recordFailure(actor: { id: string | null; username: string }, action: string, address: string, reason: string): Promise<void> {
    const outcome = this.throttle.failed(actor.username, address);
    this.logger.warn(`${action}: user ${JSON.stringify(actor.username)} from ${address} (${reason})`);
    await this.audit.record(actor, action, actor.username, { reason, address });
    for (const scope of outcome.lockedOut) {
      const target = scope === 'username' ? actor.username : address;
      this.logger.warn(`too many failed logins: ${scope} ${JSON.stringify(target)} locked out for ${Math.ceil(outcome.waitMs / 1000)} s`);
      await this.audit.record(actor, 'auth.lockout', target, { scope, address, seconds: Math.ceil(outcome.waitMs / 1000) });
    }
  }

  /** Ends the current session (or revokes the API token used for this request). */
  @Post('logout')
  @HttpCode(204)
  async logout(@CurrentUser() user: AuthUser): Promise<void> {
    await this.auth.logout(user);
  }

  @Get('me')
  @ApiOkResponse({ type: UserSummaryDto })
  me(@CurrentUser() user: AuthUser): UserSummaryDto {
    return { id: user.id, username: user.username, role: user.role };
  }

  /** Creates an API token of the calling user; its value is shown only in this response. */
  @Post('tokens')
  @ApiCreatedResponse({ type: CreatedTokenDto })
  async createToken(@CurrentUser() user: AuthUser, @Body() body: CreateTokenDto): Promise<CreatedTokenDto> {
    const created = await this.auth.createToken(user, body.name, body.expiresInDays);
    await this.audit.record(user, 'token.create', created.id, { name: created.name });
    return created;
  }

  @Get('tokens')
  @ApiOkResponse({ type: [TokenDto] })
  listTokens(@CurrentUser() user: AuthUser): Promise<TokenDto[]> {
    return this.auth.listTokens(user.id);
  }

  @Delete('tokens/:id')
  @HttpCode(204)
  async deleteToken(@CurrentUser() user: AuthUser, @Param('id', ParseUUIDPipe) id: string): Promise<void> {
    const deleted = await this.auth.deleteToken(user.id, id);
    await this.audit.record(user, 'token.delete', id, { name: deleted.name });
  }
}
