// A small in-memory HAPI FHIR R4 server for wardflow's integration tests: alerts written back to an
// EHR (Flag, RiskAssessment, DetectedIssue) and the context they point at (Patient, Encounter,
// Observation). HAPI's plain RestfulServer with one HashMapResourceProvider per type, in an
// embedded Jetty 12 (ee10, jakarta.servlet 6) bound to 127.0.0.1 only. Nothing is persisted.
//
// Compiled by deploy/local/services.sh (fetch_fhir) against the jars of deploy/local/maven/fhir-pom.xml.
// usage: java -cp 'classes:libs/*' WardflowFhirServer [port]     (base URL http://127.0.0.1:PORT/fhir)
//   -Dwardflow.fhir.strict=false     accept unknown elements / bad values (default: reject with 400)
//
// Interactions, per type: read, vread, create (POST), update (PUT) with update-as-create for a
// client-assigned id, version-aware update (If-Match: W/"n", else 412), conditional update
// (PUT [type]?identifier=system|value: none creates, one updates, more is a 412), delete, instance and
// type history, search with no parameters, by _id and by identifier (system|value, |value, value).
// A search parameter this server does not know is a 400, never a silent "return everything".
// POST [base]/$reset empties every type (for tests); GET [base]/metadata is the readiness probe.

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.parser.LenientErrorHandler;
import ca.uhn.fhir.parser.StrictErrorHandler;
import ca.uhn.fhir.rest.annotation.ConditionalUrlParam;
import ca.uhn.fhir.rest.annotation.Operation;
import ca.uhn.fhir.rest.annotation.OptionalParam;
import ca.uhn.fhir.rest.annotation.RequiredParam;
import ca.uhn.fhir.rest.annotation.ResourceParam;
import ca.uhn.fhir.rest.annotation.Search;
import ca.uhn.fhir.rest.annotation.Update;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.api.MethodOutcome;
import ca.uhn.fhir.rest.api.server.IBundleProvider;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.param.TokenOrListParam;
import ca.uhn.fhir.rest.param.TokenParam;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.SimpleBundleProvider;
import ca.uhn.fhir.rest.server.exceptions.InvalidRequestException;
import ca.uhn.fhir.rest.server.exceptions.PreconditionFailedException;
import ca.uhn.fhir.rest.server.provider.HashMapResourceProvider;
import jakarta.servlet.ServletException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.eclipse.jetty.ee10.servlet.ServletContextHandler;
import org.eclipse.jetty.ee10.servlet.ServletHolder;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.DetectedIssue;
import org.hl7.fhir.r4.model.Encounter;
import org.hl7.fhir.r4.model.Flag;
import org.hl7.fhir.r4.model.Identifier;
import org.hl7.fhir.r4.model.Observation;
import org.hl7.fhir.r4.model.OperationOutcome;
import org.hl7.fhir.r4.model.Patient;
import org.hl7.fhir.r4.model.RiskAssessment;

public final class WardflowFhirServer {

  /** HashMapResourceProvider plus identifier search, conditional update and strict search params. */
  public static class Provider<T extends IBaseResource> extends HashMapResourceProvider<T> {
    // Parameters that searchAll honours (_id) or that RestfulServer itself handles.
    private static final Set<String> ALLOWED =
        Set.of("_id", "_format", "_pretty", "_summary", "_elements", "_count");

    public Provider(FhirContext ctx, Class<T> type) {
      super(ctx, type);
    }

    @Override
    @Search(allowUnknownParams = true)
    public synchronized IBundleProvider searchAll(RequestDetails request) {
      for (String name : request.getParameters().keySet()) {
        if (!ALLOWED.contains(name)) {
          throw new InvalidRequestException(
              "unsupported search parameter '" + name + "' (this server knows _id and identifier)");
        }
      }
      return super.searchAll(request);
    }

    @Search
    public synchronized IBundleProvider searchByIdentifier(
        @RequiredParam(name = "identifier") TokenOrListParam identifier,
        @OptionalParam(name = "_id") TokenOrListParam ids,
        RequestDetails request) {
      List<IBaseResource> out = new ArrayList<>();
      for (T r : getAllResources()) {
        if (matches(r, identifier) && (ids == null || idMatches(r, ids))) out.add(r);
      }
      mySearchCount.incrementAndGet();
      return new SimpleBundleProvider(fireInterceptorsAndFilterAsNeeded(out, request));
    }

    private boolean idMatches(T r, TokenOrListParam ids) {
      for (TokenParam t : ids.getValuesAsQueryTokens()) {
        if (t.getValue().equals(r.getIdElement().getIdPart())) return true;
      }
      return false;
    }

    private boolean matches(T r, TokenOrListParam identifier) {
      List<Identifier> own = getFhirContext().newTerser().getValues(r, "identifier", Identifier.class);
      for (TokenParam t : identifier.getValuesAsQueryTokens()) {
        for (Identifier i : own) {
          boolean valueOk = t.getValue() == null || t.getValue().isEmpty() || t.getValue().equals(i.getValue());
          // "system|value" needs that system, "|value" needs no system, "value" takes any system.
          boolean systemOk = t.getSystem() == null
              || (t.getSystem().isEmpty() ? !i.hasSystem() : t.getSystem().equals(i.getSystem()));
          if (valueOk && systemOk) return true;
        }
      }
      return false;
    }

    /**
     * PUT [type]/[id] updates, or creates with that id (update-as-create). PUT [type]?identifier=...
     * is a conditional update: no match creates, one match updates it, more than one is a 412.
     */
    @Override
    @Update
    public synchronized MethodOutcome update(
        @ResourceParam T resource, @ConditionalUrlParam String conditional, RequestDetails request) {
      if (conditional == null || conditional.isBlank()) {
        checkIfMatch(resource.getIdElement().getIdPart(), request);
        return super.update(resource, null, request);
      }
      Map<String, String[]> params = request.getParameters();
      if (params.isEmpty() || !params.keySet().stream().allMatch(k -> k.equals("identifier") || k.equals("_id"))) {
        throw new InvalidRequestException("conditional update supports identifier and _id only: " + conditional);
      }
      TokenOrListParam identifier = tokens(params.get("identifier"));
      TokenOrListParam ids = tokens(params.get("_id"));
      List<T> hits = new ArrayList<>();
      for (T r : getAllResources()) {
        if ((identifier == null || matches(r, identifier)) && (ids == null || idMatches(r, ids))) hits.add(r);
      }
      if (hits.size() > 1) {
        throw new PreconditionFailedException(hits.size() + " resources match " + conditional);
      }
      if (hits.isEmpty()) {
        if (!resource.getIdElement().hasIdPart()) return create(resource, request);
        return super.update(resource, null, request);  // the body's id, created as a client-assigned id
      }
      String existing = hits.get(0).getIdElement().getIdPart();
      checkIfMatch(existing, request);
      if (resource.getIdElement().hasIdPart() && !resource.getIdElement().getIdPart().equals(existing)) {
        throw new InvalidRequestException(
            "resource id " + resource.getIdElement().getIdPart() + " does not match " + existing + ", found by " + conditional);
      }
      resource.setId(resource.getIdElement().setParts(null, getFhirContext().getResourceType(resource), existing, null));
      return super.update(resource, null, request);
    }

    /**
     * If-Match: W/"n" (version-aware update): a 412 unless version n is the current, undeleted
     * version of that id. HashMapResourceProvider itself ignores the header.
     */
    private void checkIfMatch(String idPart, RequestDetails request) {
      String ifMatch = request.getHeader("If-Match");
      if (ifMatch == null || ifMatch.isBlank()) return;
      String wanted = ifMatch.trim().replaceFirst("^W/", "").replace("\"", "");
      TreeMap<Long, T> versions = idPart == null ? null : myIdToVersionToResourceMap.get(idPart);
      Long current = versions == null || versions.isEmpty() ? null : versions.lastKey();
      if (current == null || versions.get(current) == null || !current.toString().equals(wanted)) {
        throw new PreconditionFailedException("If-Match " + ifMatch + " but " + idPart + " is at "
            + (current == null ? "no version" : versions.get(current) == null ? "deleted" : "version " + current));
      }
    }

    private static TokenOrListParam tokens(String[] values) {
      if (values == null) return null;
      TokenOrListParam out = new TokenOrListParam();
      for (String v : values) {
        for (String one : v.split(",")) {
          TokenParam t = new TokenParam();
          t.setValueAsQueryToken(null, "identifier", null, one);
          out.add(t);
        }
      }
      return out;
    }
  }

  /** POST [base]/$reset: forget every stored resource. */
  public static class ResetProvider {
    private final List<Provider<?>> providers;

    ResetProvider(List<Provider<?>> providers) {
      this.providers = providers;
    }

    @Operation(name = "$reset", idempotent = false)
    public OperationOutcome reset() {
      for (Provider<?> p : providers) p.clear();
      OperationOutcome oo = new OperationOutcome();
      oo.addIssue().setSeverity(OperationOutcome.IssueSeverity.INFORMATION)
          .setCode(OperationOutcome.IssueType.INFORMATIONAL).setDiagnostics("all resources deleted");
      return oo;
    }
  }

  public static void main(String[] args) throws Exception {
    int port = args.length > 0 ? Integer.parseInt(args[0]) : 18080;
    String host = "127.0.0.1";  // loopback only, never configurable
    boolean strict = Boolean.parseBoolean(System.getProperty("wardflow.fhir.strict", "true"));

    FhirContext ctx = FhirContext.forR4();
    ctx.setParserErrorHandler(strict ? new StrictErrorHandler() : new LenientErrorHandler());
    List<Provider<?>> providers = List.of(
        new Provider<>(ctx, Flag.class), new Provider<>(ctx, RiskAssessment.class),
        new Provider<>(ctx, DetectedIssue.class), new Provider<>(ctx, Patient.class),
        new Provider<>(ctx, Encounter.class), new Provider<>(ctx, Observation.class));

    RestfulServer fhir = new RestfulServer(ctx) {
      @Override
      protected void initialize() throws ServletException {
        setDefaultResponseEncoding(EncodingEnum.JSON);
        setResourceProviders(new ArrayList<>(providers));
        registerProvider(new ResetProvider(providers));
      }
    };
    fhir.setServerName("wardflow-local-fhir");

    Server server = new Server();
    ServerConnector http = new ServerConnector(server);
    http.setHost(host);
    http.setPort(port);
    server.addConnector(http);
    ServletContextHandler context = new ServletContextHandler("/");
    ServletHolder holder = new ServletHolder("fhir", fhir);
    holder.setInitOrder(1);  // initialise HAPI at start-up, not on the first request
    context.addServlet(holder, "/fhir/*");
    server.setHandler(context);
    server.setStopAtShutdown(true);
    server.start();
    System.out.println("wardflow FHIR R4 server on http://" + host + ":" + port + "/fhir (strict=" + strict + ")");
    server.join();
  }
}
