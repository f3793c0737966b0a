package io.wardflow.tests;

import java.io.PrintStream;
import java.io.Serializable;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.serialization.SerializerConfig;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.common.typeutils.TypeSerializer;
import org.apache.flink.api.common.typeutils.base.ListSerializer;
import org.apache.flink.api.common.typeutils.base.MapSerializer;
import org.apache.flink.core.fs.FSDataInputStream;
import org.apache.flink.core.memory.DataInputViewStreamWrapper;
import org.apache.flink.runtime.checkpoint.OperatorState;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.runtime.checkpoint.metadata.CheckpointMetadata;
import org.apache.flink.runtime.state.KeyGroupsStateHandle;
import org.apache.flink.runtime.state.KeyedBackendSerializationProxy;
import org.apache.flink.runtime.state.KeyedStateHandle;
import org.apache.flink.runtime.state.hashmap.HashMapStateBackend;
import org.apache.flink.runtime.state.metainfo.StateMetaInfoSnapshot;
import org.apache.flink.state.api.OperatorIdentifier;
import org.apache.flink.state.api.SavepointReader;
import org.apache.flink.state.api.functions.KeyedStateReaderFunction;
import org.apache.flink.state.api.runtime.SavepointLoader;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.table.data.RowData;
import org.apache.flink.util.CloseableIterator;
import org.apache.flink.util.Collector;

/**
 * Reads a process table function's keyed state out of a savepoint (the State Processor API), for
 * tests: {@code PtfStateReader <savepoint> <state name>} finds the one operator that holds a keyed
 * state of that name and prints, as JSON lines, first {@code {"states": {name: kind}}} (every keyed
 * state the operator declares: the function's own, such as a ListView's list, and Flink's map of
 * named timers, {@code internal-named-timers-map}), then one line per key: the key's string
 * fields and, per state that holds something for it, a value state's {@code true}, a list's
 * length or a map's entries (as strings). A key whose row is gone but another state is not is
 * state a cleared function left behind.
 *
 * <p>The operator is found by the state's name in the savepoint's keyed-state headers, and every
 * serializer (key and states) is the one the savepoint recorded, so the reader needs neither the
 * planner's operator id nor the function's state types. Unnamed timers are not keyed state and are
 * not read.
 */
public final class PtfStateReader {
  private PtfStateReader() {}

  public static void main(String[] args) throws Exception {
    String path = args[0];
    String state = args[1];
    ClassLoader loader = PtfStateReader.class.getClassLoader();
    CheckpointMetadata metadata = SavepointLoader.loadSavepointMetadata(path);
    List<OperatorState> found = new ArrayList<>();
    TypeSerializer<RowData> keys = null;
    Map<String, String> kinds = new TreeMap<>();
    List<Declared> declared = new ArrayList<>();
    for (OperatorState op : metadata.getOperatorStates()) {
      for (OperatorSubtaskState sub : op.getSubtaskStates().values()) {
        for (KeyedStateHandle h : sub.getManagedKeyedState()) {
          if (!(h instanceof KeyGroupsStateHandle)) continue;
          KeyedBackendSerializationProxy<RowData> proxy =
              new KeyedBackendSerializationProxy<>(loader);
          try (FSDataInputStream in = ((KeyGroupsStateHandle) h).openInputStream()) {
            proxy.read(new DataInputViewStreamWrapper(in));
          }
          List<StateMetaInfoSnapshot> states = proxy.getStateMetaInfoSnapshots();
          boolean mine =
              states.stream()
                  .anyMatch(
                      s ->
                          s.getName().equals(state)
                              && s.getBackendStateType()
                                  == StateMetaInfoSnapshot.BackendStateType.KEY_VALUE);
          if (!mine || found.contains(op)) continue;
          found.add(op);
          keys = proxy.getKeySerializerSnapshot().restoreSerializer();
          for (StateMetaInfoSnapshot s : states) {
            if (s.getBackendStateType() != StateMetaInfoSnapshot.BackendStateType.KEY_VALUE) {
              continue;
            }
            String kind = s.getOption(StateMetaInfoSnapshot.CommonOptionsKeys.KEYED_STATE_TYPE);
            TypeSerializer<?> values =
                s.getTypeSerializerSnapshot(
                        StateMetaInfoSnapshot.CommonSerializerKeys.VALUE_SERIALIZER)
                    .restoreSerializer();
            kinds.put(s.getName(), kind);
            declared.add(new Declared(s.getName(), kind, values));
          }
        }
      }
    }
    if (found.size() != 1) {
      throw new IllegalArgumentException(
          found.size() + " operators hold a keyed state named " + state + " (one expected)");
    }
    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    StringBuilder header = new StringBuilder("{\"states\": {");
    int n = 0;
    for (Map.Entry<String, String> e : kinds.entrySet()) {
      header.append(n++ > 0 ? ", " : "").append(json(e.getKey())).append(": ");
      header.append(json(e.getValue()));
    }
    out.println(header.append("}}"));
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
    env.setParallelism(1);
    SavepointReader savepoint = SavepointReader.read(env, path, new HashMapStateBackend());
    OperatorIdentifier id =
        OperatorIdentifier.forUidHash(found.get(0).getOperatorID().toHexString());
    try (CloseableIterator<String> rows =
        savepoint
            .readKeyedState(id, new Reader(declared), new Serialized<>(keys), Types.STRING)
            .executeAndCollect()) {
      while (rows.hasNext()) out.println(rows.next());
    }
  }

  static String json(Object s) {
    return "\"" + s.toString().replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
  }

  /** A keyed state as the savepoint declares it: name, kind (VALUE, LIST, MAP) and serializer. */
  static final class Declared implements Serializable {
    final String name;
    final String kind;
    final TypeSerializer<?> serializer;

    Declared(String name, String kind, TypeSerializer<?> serializer) {
      this.name = name;
      this.kind = kind;
      this.serializer = serializer;
    }
  }

  /** One JSON line per key. */
  static final class Reader extends KeyedStateReaderFunction<RowData, String> {
    private final List<Declared> declared;
    private transient List<Object> states;

    Reader(List<Declared> declared) {
      this.declared = declared;
    }

    @Override
    @SuppressWarnings({"unchecked", "rawtypes"})
    public void open(OpenContext context) {
      states = new ArrayList<>();
      for (Declared d : declared) {
        switch (d.kind) {
          case "VALUE":
            states.add(
                getRuntimeContext()
                    .getState(new ValueStateDescriptor<>(d.name, (TypeSerializer) d.serializer)));
            break;
          case "LIST":
            TypeSerializer element = ((ListSerializer) d.serializer).getElementSerializer();
            states.add(getRuntimeContext().getListState(new ListStateDescriptor<>(d.name, element)));
            break;
          case "MAP":
            MapSerializer map = (MapSerializer) d.serializer;
            states.add(
                getRuntimeContext()
                    .getMapState(
                        new MapStateDescriptor<>(
                            d.name, map.getKeySerializer(), map.getValueSerializer())));
            break;
          default:
            throw new IllegalArgumentException(d.name + ": a " + d.kind + " state is not read");
        }
      }
    }

    @Override
    @SuppressWarnings("unchecked")
    public void readKey(RowData key, Context ctx, Collector<String> out) throws Exception {
      StringBuilder b = new StringBuilder("{\"key\": [");
      for (int i = 0; i < key.getArity(); i++) {
        b.append(i > 0 ? ", " : "").append(key.isNullAt(i) ? "null" : json(key.getString(i)));
      }
      b.append("], \"states\": {");
      int shown = 0;
      for (int i = 0; i < declared.size(); i++) {
        String held = held(states.get(i));
        if (held == null) continue;
        b.append(shown++ > 0 ? ", " : "").append(json(declared.get(i).name)).append(": ");
        b.append(held);
      }
      out.collect(b.append("}}").toString());
    }

    /** What a state holds for the current key as JSON, or null where it holds nothing. */
    @SuppressWarnings("unchecked")
    private static String held(Object state) throws Exception {
      if (state instanceof ValueState) {
        return ((ValueState<Object>) state).value() == null ? null : "true";
      }
      if (state instanceof ListState) {
        Iterable<Object> all = ((ListState<Object>) state).get();
        int n = 0;
        for (Object ignored : all == null ? List.of() : all) n++;
        return n == 0 ? null : Integer.toString(n);
      }
      StringBuilder b = new StringBuilder("{");
      int n = 0;
      for (Map.Entry<Object, Object> e : ((MapState<Object, Object>) state).entries()) {
        b.append(n++ > 0 ? ", " : "").append(json(e.getKey())).append(": ");
        b.append(json(e.getValue()));
      }
      return n == 0 ? null : b.append("}").toString();
    }
  }

  /** A type information that is the serializer the savepoint recorded. */
  static final class Serialized<T> extends TypeInformation<T> {
    private final TypeSerializer<T> serializer;

    Serialized(TypeSerializer<T> serializer) {
      this.serializer = serializer;
    }

    @Override
    public boolean isBasicType() {
      return false;
    }

    @Override
    public boolean isTupleType() {
      return false;
    }

    @Override
    public int getArity() {
      return 1;
    }

    @Override
    public int getTotalFields() {
      return 1;
    }

    @Override
    @SuppressWarnings("unchecked")
    public Class<T> getTypeClass() {
      return (Class<T>) Object.class;
    }

    @Override
    public boolean isKeyType() {
      return true;
    }

    @Override
    public TypeSerializer<T> createSerializer(SerializerConfig config) {
      return serializer.duplicate();
    }

    @Override
    public String toString() {
      return "Serialized(" + serializer + ")";
    }

    @Override
    public boolean equals(Object o) {
      return o instanceof Serialized && ((Serialized<?>) o).serializer.equals(serializer);
    }

    @Override
    public int hashCode() {
      return serializer.hashCode();
    }

    @Override
    public boolean canEqual(Object o) {
      return o instanceof Serialized;
    }
  }
}
