import { MigrationInterface, QueryRunner, Table, TableColumn, TableColumnOptions } from 'typeorm';

/**
 * Job history and webhooks (issue 5): per-disk figures, bytes read and stored on jobs; webhooks and their delivery log.
 * Same approach as InitialSchema: the QueryRunner Table API with the few dialect differences resolved here.
 */
export class Observability1767571200000 implements MigrationInterface {
  readonly name = 'Observability1767571200000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const mysql = isMysql(queryRunner);
    await queryRunner.addColumns('jobs', [
      new TableColumn({ name: 'disks', type: 'text', isNullable: true }),
      new TableColumn({ name: 'bytesRead', type: 'bigint', default: 0 }),
      new TableColumn({ name: 'bytesStored', type: 'bigint', default: 0 }),
    ]);
    for (const table of tables(mysql)) await queryRunner.createTable(table, false, true, true);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const table of tables(isMysql(queryRunner)).reverse()) await queryRunner.dropTable(table.name, false, true, true);
    await queryRunner.dropColumn('jobs', 'bytesStored');
    await queryRunner.dropColumn('jobs', 'bytesRead');
    await queryRunner.dropColumn('jobs', 'disks');
  }
}

function isMysql(queryRunner: QueryRunner): boolean {
  const type = queryRunner.connection.driver.options.type;
  if (type === 'mysql' || type === 'mariadb') return true;
  if (type === 'better-sqlite3') return false;
  throw new Error(`Observability migration: unsupported database type "${type}"`);
}

function tables(mysql: boolean): Table[] {
  const now = mysql ? 'CURRENT_TIMESTAMP(6)' : "datetime('now')";
  const precision = mysql ? 6 : undefined;
  const id = (): TableColumnOptions => ({
    name: 'id',
    type: 'varchar',
    length: mysql ? '36' : undefined,
    isPrimary: true,
    isGenerated: true,
    generationStrategy: 'uuid',
  });
  const varchar = (name: string, length: number): TableColumnOptions => ({ name, type: 'varchar', length: String(length) });
  const text = (name: string, nullable = false): TableColumnOptions => ({ name, type: 'text', isNullable: nullable });
  const int = (name: string, nullable: boolean, defaultValue?: number): TableColumnOptions => ({
    name,
    type: mysql ? 'int' : 'integer',
    isNullable: nullable,
    default: defaultValue,
  });
  const created = (name: string, onUpdate = false): TableColumnOptions => ({
    name,
    type: 'datetime',
    precision,
    default: now,
    onUpdate: onUpdate && mysql ? now : undefined,
  });
  return [
    new Table({
      name: 'webhooks',
      columns: [
        id(),
        varchar('name', 128),
        varchar('url', 2048),
        text('events'),
        text('secretSealed'),
        { name: 'enabled', type: 'boolean', default: 1 },
        created('createdAt'),
        created('updatedAt', true),
      ],
    }),
    new Table({
      name: 'webhook_deliveries',
      columns: [
        id(),
        varchar('webhookId', 36),
        varchar('event', 32),
        varchar('subject', 64),
        text('payload'),
        varchar('state', 16),
        int('attempts', false, 0),
        int('lastStatus', true),
        text('lastError', true),
        { name: 'lastDurationMs', type: 'bigint', default: 0 },
        created('createdAt'),
        { name: 'deliveredAt', type: 'datetime', isNullable: true },
      ],
      indices: [
        { name: 'IDX_webhook_deliveries_webhookId_createdAt', columnNames: ['webhookId', 'createdAt'] },
        { name: 'IDX_webhook_deliveries_webhookId_event_subject', columnNames: ['webhookId', 'event', 'subject'], isUnique: true },
      ],
    }),
  ];
}
