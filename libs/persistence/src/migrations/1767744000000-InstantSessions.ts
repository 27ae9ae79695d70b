import { MigrationInterface, QueryRunner, Table } from 'typeorm';

/** instant_sessions (issue 6): instant-restore sessions outlive the API process that served them, as rows. */
export class InstantSessions1767744000000 implements MigrationInterface {
  readonly name = 'InstantSessions1767744000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const type = queryRunner.connection.driver.options.type;
    const mysql = type === 'mysql' || type === 'mariadb';
    if (!mysql && type !== 'better-sqlite3') throw new Error(`InstantSessions migration: unsupported database type "${type}"`);
    const varchar = (name: string, length: number, nullable = false) => ({ name, type: 'varchar', length: String(length), isNullable: nullable });
    const datetime = (name: string, nullable = false) => ({ name, type: 'datetime', isNullable: nullable });
    await queryRunner.createTable(
      new Table({
        name: 'instant_sessions',
        columns: [
          { ...varchar('id', 36), isPrimary: true },
          varchar('pointId', 36),
          varchar('diskKey', 200),
          { name: 'writable', type: 'boolean', default: 0 },
          varchar('state', 16),
          varchar('owner', 255),
          { name: 'sizeBytes', type: 'bigint' },
          datetime('createdAt'),
          datetime('expiresAt'),
          datetime('endedAt', true),
          varchar('endReason', 1000, true),
        ],
        indices: [{ name: 'IDX_instant_sessions_state_expiresAt', columnNames: ['state', 'expiresAt'] }],
      }),
      false,
      true,
      true,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('instant_sessions', false, true, true);
  }
}
