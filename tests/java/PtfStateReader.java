package io.wardflow.tests;

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Iterator;
import java.util.Map;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.serialization.SerializerConfig;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.common.typeutils.TypeSerializer;
import org.apache.flink.api.common.typeutils.base.LongSerializer;
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
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.runtime.typeutils.StringDataSerializer;
import org.apache.flink.util.CloseableIterator;
import org.apache.flink.util.Collector;

/**
 * Reads a process table function's keyed state out of a savepoint (the State Processor API), for
 * tests: {@code PtfStateReader <savepoint> <state name>} prints one JSON line per key of the
 * operator that holds a value state of that name: the key (its string fields), whether the value
 * state holds a row, and the function's named timers as Flink keeps them (the map state
 * {@code internal-named-timers-map}, AbstractProcessTableOperator). A key with timers and no row
 * is state a cleared function left behind.
 *
 * <p>The operator is found by its state's name in the savepoint's keyed state headers, and the key
 * and value serializers are the ones the savepoint recorded, so the reader needs neither the
 * planner's operator id nor the function's state type.
 */
public final class PtfStateReader {
  static final String NAMED_TIMERS = "internal-named-timers-map";

  private PtfStateReader() {}

  public static void main(String[] args) throws Exception {
    String path = args[0];
    String state = args[1];
    ClassLoader loader = PtfStateReader.class.getClassLoader();
    CheckpointMetadata metadata = SavepointLoader.loadSavepointMetadata(path);
    OperatorState found = null;
    TypeSerializer<RowData> keys = null;
    TypeSerializer<Object> values = null;
    for (OperatorState op : metadata.getOperatorStates()) {
      for (OperatorSubtaskState sub : op.getSubtaskStates().values()) {
        for (KeyedStateHandle h : sub.getManagedKeyedState()) {
          if (!(h instanceof KeyGroupsStateHandle) || found != null) continue;
          try (FSDataInputStream in = ((KeyGroupsStateHandle) h).openInputStream()) {
            KeyedBackendSerializationProxy<RowData> proxy =
                new KeyedBackendSerializationProxy<>(loader);
            proxy.read(new DataInputViewStreamWrapper(in));
            for (StateMetaInfoSnapshot s : proxy.getStateMetaInfoSnapshots()) {
              if (s.getName().equals(state)
                  && s.getBackendStateType() == StateMetaInfoSnapshot.BackendStateType.KEY_VALUE) {
                found = op;
                keys = proxy.getKeySerializerSnapshot().restoreSerializer();
                @SuppressWarnings("unchecked")
                TypeSerializer<Object> v =
                    (TypeSerializer<Object>)
                        s.getTypeSerializerSnapshot(
                                StateMetaInfoSnapshot.CommonSerializerKeys.VALUE_SERIALIZER)
                            .restoreSerializer();
                values = v;
              }
            }
          }
        }
      }
    }
    if (found == null) throw new IllegalArgumentException("no keyed state named " + state);
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
    env.setParallelism(1);
    SavepointReader savepoint = SavepointReader.read(env, path, new HashMapStateBackend());
    OperatorIdentifier id = OperatorIdentifier.forUidHash(found.getOperatorID().toHexString());
    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    try (CloseableIterator<String> rows =
        savepoint
            .readKeyedState(id, new Reader(state, values), new Serialized<>(keys), Types.STRING)
            .executeAndCollect()) {
      while (rows.hasNext()) out.println(rows.next());
    }
  }

  /** One JSON line per key. */
  static final class Reader extends KeyedStateReaderFunction<RowData, String> {
    private final String name;
    private final TypeSerializer<Object> serializer;
    private transient ValueState<Object> value;
    private transient MapState<StringData, Long> timers;

    Reader(String name, TypeSerializer<Object> serializer) {
      this.name = name;
      this.serializer = serializer;
    }

    @Override
    public void open(OpenContext context) {
      value = getRuntimeContext().getState(new ValueStateDescriptor<>(name, serializer));
      timers =
          getRuntimeContext()
              .getMapState(
                  new MapStateDescriptor<>(
                      NAMED_TIMERS, StringDataSerializer.INSTANCE, LongSerializer.INSTANCE));
    }

    @Override
    public void readKey(RowData key, Context ctx, Collector<String> out) throws Exception {
      StringBuilder b = new StringBuilder("{\"key\": [");
      for (int i = 0; i < key.getArity(); i++) {
        b.append(i > 0 ? ", " : "").append(key.isNullAt(i) ? "null" : json(key.getString(i)));
      }
      b.append("], \"state\": ").append(value.value() != null).append(", \"timers\": {");
      Iterator<Map.Entry<StringData, Long>> it = timers.iterator();
      for (int i = 0; it != null && it.hasNext(); i++) {
        Map.Entry<StringData, Long> e = it.next();
        b.append(i > 0 ? ", " : "").append(json(e.getKey())).append(": ").append(e.getValue());
      }
      out.collect(b.append("}}").toString());
    }

    private static String json(Object s) {
      return "\"" + s.toString().replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
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
