package vyxbench;

import com.hsbc.cranker.connector.CrankerConnector;
import com.hsbc.cranker.connector.CrankerConnectorBuilder;
import com.hsbc.cranker.mucranker.CrankerRouter;
import com.hsbc.cranker.mucranker.CrankerRouterBuilder;
import io.muserver.MuServer;
import io.muserver.MuServerBuilder;

import java.net.URI;
import java.util.List;

/**
 * Starts one side of the Cranker contender, on loopback, speaking cranker protocol v3.
 *
 * <pre>
 *   CrankerBench router                    # prints "listening http://... register ws://..."
 *   CrankerBench connector WS_URI TARGET   # a connector serving route "hello" from TARGET
 * </pre>
 *
 * The router and the connector run as separate processes, as vyx's gateway and worker do,
 * so the router's peak RSS is measured alone.
 */
public final class CrankerBench {
    public static void main(String[] args) throws Exception {
        if (args.length == 1 && args[0].equals("router")) {
            CrankerRouter router = CrankerRouterBuilder.crankerRouter()
                .withSupportedCrankerProtocols(List.of("cranker_3.0"))
                .start();
            MuServer registration = MuServerBuilder.muServer()
                .withInterface("127.0.0.1")
                .withHttpPort(0)
                .addHandler(router.createRegistrationHandler())
                .start();
            MuServer http = MuServerBuilder.muServer()
                .withInterface("127.0.0.1")
                .withHttpPort(0)
                .addHandler(router.createHttpHandler())
                .start();
            System.out.println("listening http://127.0.0.1:" + http.uri().getPort()
                + " register ws://127.0.0.1:" + registration.uri().getPort());
            System.out.flush();
            Thread.currentThread().join();
        } else if (args.length == 3 && args[0].equals("connector")) {
            CrankerConnector connector = CrankerConnectorBuilder.connector()
                .withRouterUris(() -> List.of(URI.create(args[1])))
                .withPreferredProtocols(List.of(CrankerConnectorBuilder.CRANKER_PROTOCOL_3))
                .withRoute("hello")
                .withTarget(URI.create(args[2]))
                .withComponentName("vyx-bench-hello")
                .start();
            System.out.println("connector started " + connector);
            System.out.flush();
            Thread.currentThread().join();
        } else {
            System.err.println("usage: CrankerBench router | connector WS_URI TARGET_URI");
            System.exit(2);
        }
    }
}
