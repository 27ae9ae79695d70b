import { MigrationInterface, QueryRunner, TableColumn } from 'typeorm';

/**
 * vms: what policy selection looks at besides names and placement (issue 5): the VM's folder and resource pool
 * (inventory paths), its vSphere tags and its custom attributes, written by every inventory sync.
 * restore_points.quiesceNote: why a point is crash-consistent although its job asked for quiescing.
 * jobs.basePointId: the restore point a backup run built on (how "the previous run did not complete" is found).
 */
export class LabelsQuiesceBase1767657600000 implements MigrationInterface {
  readonly name = 'LabelsQuiesceBase1767657600000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.addColumns('vms', [
      new TableColumn({ name: 'folderPath', type: 'varchar', length: '1024', isNullable: true }),
      new TableColumn({ name: 'resourcePool', type: 'varchar', length: '1024', isNullable: true }),
      new TableColumn({ name: 'tags', type: 'text', isNullable: true }),
      new TableColumn({ name: 'customAttributes', type: 'text', isNullable: true }),
    ]);
    await queryRunner.addColumn('restore_points', new TableColumn({ name: 'quiesceNote', type: 'varchar', length: '255', isNullable: true }));
    await queryRunner.addColumn('jobs', new TableColumn({ name: 'basePointId', type: 'varchar', length: '36', isNullable: true }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropColumn('jobs', 'basePointId');
    await queryRunner.dropColumn('restore_points', 'quiesceNote');
    for (const name of ['customAttributes', 'tags', 'resourcePool', 'folderPath']) await queryRunner.dropColumn('vms', name);
  }
}
