import { Body, Controller, Delete, Get, HttpCode, Param, ParseUUIDPipe, Patch, Post, Put } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { AuditService } from '../audit/audit.service';
import { AuthUser, CurrentUser, Roles } from './auth.decorators';
import { CreateUserDto, PasswordChangedDto, SetPasswordDto, TokenDto, UpdateUserDto, UserDto } from './auth.dto';
import { AuthService } from './auth.service';
import { UsersService } from './users.service';

@ApiTags('users')
@ApiBearerAuth()
@Roles('admin')
@Controller('users')
export class UsersController {
  constructor(
    private readonly users: UsersService,
    private readonly auth: AuthService,
    private readonly audit: AuditService,
  ) {}

  @Get()
  @ApiOkResponse({ type: [UserDto] })
  list(): Promise<UserDto[]> {
    return this.users.list();
  }

  @Post()
  @ApiCreatedResponse({ type: UserDto })
  async create(@CurrentUser() actor: AuthUser, @Body() body: CreateUserDto): Promise<UserDto> {
    const user = await this.users.create(body.username, body.password, body.role);
    await this.audit.record(actor, 'user.create', user.username, { role: user.role });
    return user;
  }

  /** Changes a user's role or disables/enables it; disabling ends its login sessions at once. */
  @Patch(':id')
  @ApiOkResponse({ type: UserDto })
  async update(@CurrentUser() actor: AuthUser, @Param('id', ParseUUIDPipe) id: string, @Body() body: UpdateUserDto): Promise<UserDto> {
    const { before, after } = await this.users.update(id, body, actor.id);
    const sessionsRevoked = after.disabled ? await this.auth.revokeSessions(id) : 0;
    await this.audit.record(actor, 'user.update', after.username, {
      ...(before.role !== after.role ? { role: after.role } : {}),
      ...(before.disabled !== after.disabled ? { disabled: after.disabled } : {}),
      sessionsRevoked,
    });
    return after;
  }

  /** Admin password reset: sets a new password and ends all of the user's login sessions. */
  @Put(':id/password')
  @HttpCode(200)
  @ApiOkResponse({ type: PasswordChangedDto })
  async resetPassword(@CurrentUser() actor: AuthUser, @Param('id', ParseUUIDPipe) id: string, @Body() body: SetPasswordDto): Promise<PasswordChangedDto> {
    const user = await this.users.setPassword(id, body.password);
    const sessionsRevoked = await this.auth.revokeSessions(id, actor.id === id ? actor.tokenId : undefined);
    await this.audit.record(actor, 'user.password.reset', user.username, { sessionsRevoked });
    return { sessionsRevoked };
  }

  /** The API tokens of any user (values are never shown again). */
  @Get(':id/tokens')
  @ApiOkResponse({ type: [TokenDto] })
  async listTokens(@Param('id', ParseUUIDPipe) id: string): Promise<TokenDto[]> {
    await this.users.get(id);
    return this.auth.listTokens(id);
  }

  /** Revokes an API token of any user. */
  @Delete(':id/tokens/:tokenId')
  @HttpCode(204)
  async deleteToken(
    @CurrentUser() actor: AuthUser,
    @Param('id', ParseUUIDPipe) id: string,
    @Param('tokenId', ParseUUIDPipe) tokenId: string,
  ): Promise<void> {
    const user = await this.users.get(id);
    const deleted = await this.auth.deleteToken(id, tokenId);
    await this.audit.record(actor, 'token.delete', tokenId, { name: deleted.name, user: user.username });
  }

  @Delete(':id')
  @HttpCode(204)
  async delete(@CurrentUser() actor: AuthUser, @Param('id', ParseUUIDPipe) id: string): Promise<void> {
    const user = await this.users.delete(id, actor.id);
    await this.audit.record(actor, 'user.delete', user.username);
  }
}
