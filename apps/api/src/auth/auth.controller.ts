import { Body, Controller, Delete, Get, HttpCode, Param, ParseUUIDPipe, Post, UnauthorizedException } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiOkResponse, ApiTags, ApiUnauthorizedResponse } from '@nestjs/swagger';
import { AuditService } from '../audit/audit.service';
import { AuthUser, CurrentUser, Public } from './auth.decorators';
import { CreatedTokenDto, CreateTokenDto, LoginDto, LoginResponseDto, TokenDto, UserSummaryDto } from './auth.dto';
import { AuthService, LoginFailedError } from './auth.service';

@ApiTags('auth')
@ApiBearerAuth()
@Controller('auth')
export class AuthController {
  constructor(
    private readonly auth: AuthService,
    private readonly audit: AuditService,
  ) {}

  /** Exchanges a username and password for a session token. */
  @Public()
  @Post('login')
  @HttpCode(200)
  @ApiOkResponse({ type: LoginResponseDto })
  @ApiUnauthorizedResponse({ description: 'Wrong username or password' })
  async login(@Body() body: LoginDto): Promise<LoginResponseDto> {
    try {
      const result = await this.auth.login(body.username, body.password);
      await this.audit.record(result.user, 'auth.login', result.user.username);
      return result;
    } catch (err) {
      if (!(err instanceof LoginFailedError)) throw err;
      await this.audit.record({ id: null, username: body.username }, 'auth.login.failed', body.username, { reason: err.reason });
      throw new UnauthorizedException(err.message);
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
    return this.auth.listTokens(user);
  }

  @Delete('tokens/:id')
  @HttpCode(204)
  async deleteToken(@CurrentUser() user: AuthUser, @Param('id', ParseUUIDPipe) id: string): Promise<void> {
    const deleted = await this.auth.deleteToken(user, id);
    await this.audit.record(user, 'token.delete', id, { name: deleted.name });
  }
}
