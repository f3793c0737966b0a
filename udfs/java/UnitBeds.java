// The staffed beds of a unit, or of a whole facility, from the capacity file as the bed-census
// job passes it (udfs.census.capacity_sql: a constant STRING, one "facility TAB unit TAB beds"
// line per unit). `wf_unit_beds(capacity, facility_id, unit_id)` is the unit's beds, NULL for a
// unit the file does not configure; unit_id @ALL_UNITS@ (schemas.capacity.ALL_UNITS, a name no unit
// may have) is the facility's total. The text is parsed once per JVM; a call is two map lookups
// on Flink's binary strings.
package io.wardflow.udf;

import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.functions.ScalarFunction;

public class UnitBeds extends ScalarFunction {
  static final StringData ALL = StringData.fromString("@ALL_UNITS@");
  private static final Map<String, Map<StringData, Map<StringData, Integer>>> PARSED =
      new ConcurrentHashMap<>();
  private transient StringData text;
  private transient Map<StringData, Map<StringData, Integer>> beds;

  static Map<StringData, Map<StringData, Integer>> parse(String text) {
    Map<StringData, Map<StringData, Integer>> out = new HashMap<>();
    for (String line : text.split("\n")) {
      String[] c = line.split("\t");
      if (c.length != 3) continue;
      int n = Integer.parseInt(c[2].trim());
      Map<StringData, Integer> units =
          out.computeIfAbsent(StringData.fromString(c[0]), k -> new HashMap<>());
      units.put(StringData.fromString(c[1]), n);
      units.merge(ALL, n, Integer::sum);
    }
    return out;
  }

  public @DataTypeHint("INT") Integer eval(
      @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData capacity,
      @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData facility,
      @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData unit) {
    if (capacity == null || facility == null || unit == null) return null;
    if (capacity != text && (text == null || !capacity.equals(text))) {
      beds = PARSED.computeIfAbsent(capacity.toString(), UnitBeds::parse);
      text = capacity;
    }
    Map<StringData, Integer> units = beds.get(facility);
    return units == null ? null : units.get(unit);
  }
}
