const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Row ids are uuids; checking first keeps malformed input from reaching a `::uuid` cast (an SQL error). */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}
