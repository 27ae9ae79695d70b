import { EventSubscriber, type EntitySubscriberInterface, type InsertEvent, type ObjectLiteral } from 'typeorm';

/**
 * Stamps `@CreateDateColumn` values in the process, to the millisecond, before a row is inserted. The SQLite
 * column default (`datetime('now')`) has whole seconds only, so rows made within one second would tie and lists
 * ordered by creation (jobs, restore points, search results) would come out in an arbitrary order. A value the
 * caller set (e.g. a point imported with its manifest's time) is kept.
 */
@EventSubscriber()
export class CreatedAtSubscriber implements EntitySubscriberInterface<ObjectLiteral> {
  beforeInsert(event: InsertEvent<ObjectLiteral>): void {
    const column = event.metadata.createDateColumn;
    if (column && event.entity && column.getEntityValue(event.entity) === undefined) {
      column.setEntityValue(event.entity, new Date());
    }
  }
}
