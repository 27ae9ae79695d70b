import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsBoolean, IsIn, IsInt, IsNotEmpty, IsOptional, IsString, Matches, Max, MaxLength, Min, MinLength } from 'class-validator';
import { Role, ROLES } from '@vmkeep/contracts';

export class LoginDto {
  @ApiProperty({ example: 'admin' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(128)
  username!: string;

  @ApiProperty({ format: 'password' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(1024)
  password!: string;
}

export class UserSummaryDto {
  @ApiProperty() id!: string;
  @ApiProperty() username!: string;
  @ApiProperty({ enum: ROLES }) role!: Role;
}

export class LoginResponseDto {
  @ApiProperty({ description: 'Bearer token for the Authorization header' }) token!: string;
  @ApiProperty() expiresAt!: Date;
  @ApiProperty({ type: UserSummaryDto }) user!: UserSummaryDto;
}

export class CreateTokenDto {
  @ApiProperty({ example: 'ci-pipeline' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(128)
  name!: string;

  @ApiPropertyOptional({ description: 'Days until the token expires; omitted = never', minimum: 1, maximum: 3650 })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(3650)
  expiresInDays?: number;
}

export class TokenDto {
  @ApiProperty() id!: string;
  @ApiProperty() name!: string;
  @ApiProperty({ nullable: true, type: Date }) expiresAt!: Date | null;
  @ApiProperty({ nullable: true, type: Date }) lastUsedAt!: Date | null;
  @ApiProperty() createdAt!: Date;
}

export class CreatedTokenDto extends TokenDto {
  @ApiProperty({ description: 'The token value; shown only in this response' }) token!: string;
}

export class CreateUserDto {
  @ApiProperty({ example: 'alice' })
  @IsString()
  @Matches(/^[A-Za-z0-9._@-]{1,128}$/, { message: 'username may use letters, digits and . _ @ - (1-128 characters)' })
  username!: string;

  @ApiProperty({ format: 'password', minLength: 8 })
  @IsString()
  @MinLength(8)
  @MaxLength(1024)
  password!: string;

  @ApiProperty({ enum: ROLES })
  @IsIn(ROLES)
  role!: Role;
}

export class UserDto {
  @ApiProperty() id!: string;
  @ApiProperty() username!: string;
  @ApiProperty({ enum: ROLES }) role!: Role;
  @ApiProperty() disabled!: boolean;
  @ApiProperty() createdAt!: Date;
}

export class ChangePasswordDto {
  @ApiProperty({ format: 'password' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(1024)
  currentPassword!: string;

  @ApiProperty({ format: 'password', minLength: 8 })
  @IsString()
  @MinLength(8)
  @MaxLength(1024)
  newPassword!: string;
}

export class SetPasswordDto {
  @ApiProperty({ format: 'password', minLength: 8 })
  @IsString()
  @MinLength(8)
  @MaxLength(1024)
  password!: string;
}

export class UpdateUserDto {
  @ApiPropertyOptional({ enum: ROLES })
  @IsOptional()
  @IsIn(ROLES)
  role?: Role;

  @ApiPropertyOptional({ description: 'A disabled user cannot log in; its sessions end at once and its API tokens stop working' })
  @IsOptional()
  @IsBoolean()
  disabled?: boolean;
}

export class PasswordChangedDto {
  @ApiProperty({ description: 'How many login sessions were ended' }) sessionsRevoked!: number;
}
