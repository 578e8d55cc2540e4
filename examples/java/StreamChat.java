// Streams a chat answer from corral (or Ollama) with nothing but the JDK (Java 17+).
//
//   javac StreamChat.java && java StreamChat smollm2 "Why is the sky blue?"
//   java StreamChat.java smollm2                 (source-file mode, no javac step)
//
// The server is $OLLAMA_HOST (default http://127.0.0.1:11434); the model is the first argument
// or $CORRAL_MODEL. POST /api/chat answers with one JSON object per line (NDJSON) until "done".

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

public class StreamChat {

    public static void main(String[] args) throws Exception {
        String model = args.length > 0 ? args[0] : System.getenv("CORRAL_MODEL");
        if (model == null || model.isBlank()) {
            System.err.println("usage: java StreamChat MODEL [PROMPT]   (or set CORRAL_MODEL)");
            System.exit(2);
        }
        String prompt = args.length > 1 ? args[1] : "Why is the sky blue? Answer in one sentence.";
        String body = "{\"model\":" + quote(model) + ",\"stream\":true,"
                + "\"messages\":[{\"role\":\"user\",\"content\":" + quote(prompt) + "}],"
                + "\"options\":{\"temperature\":0,\"seed\":42,\"num_predict\":64}}";

        HttpClient client = HttpClient.newBuilder()
                .connectTimeout(Duration.ofSeconds(10))
                .build();
        HttpRequest request = HttpRequest.newBuilder(URI.create(host() + "/api/chat"))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body, StandardCharsets.UTF_8))
                .build();
        HttpResponse<java.io.InputStream> response = client.send(request, HttpResponse.BodyHandlers.ofInputStream());

        try (BufferedReader lines = new BufferedReader(new InputStreamReader(response.body(), StandardCharsets.UTF_8))) {
            if (response.statusCode() != 200) {
                System.err.println("Error " + response.statusCode() + ": " + lines.readLine());
                System.exit(1);
            }
            String line;
            while ((line = lines.readLine()) != null) {
                if (line.isBlank()) {
                    continue;
                }
                Map<String, Object> chunk = asObject(new Json(line).value());
                if (chunk.containsKey("error")) {
                    System.err.println("\nError: " + chunk.get("error"));
                    System.exit(1);
                }
                Map<String, Object> message = asObject(chunk.get("message"));
                System.out.print(message.getOrDefault("content", ""));
                System.out.flush();
                if (Boolean.TRUE.equals(chunk.get("done"))) {
                    System.out.println();
                    System.out.println("[done: " + chunk.get("done_reason") + ", " + chunk.get("eval_count") + " tokens]");
                }
            }
        }
    }

    static String host() {
        String host = System.getenv("OLLAMA_HOST");
        if (host == null || host.isBlank()) {
            return "http://127.0.0.1:11434";
        }
        host = host.replaceAll("/+$", "");
        return host.startsWith("http://") || host.startsWith("https://") ? host : "http://" + host;
    }

    static String quote(String text) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : text.toCharArray()) {
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        return out.append('"').toString();
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> asObject(Object value) {
        return value instanceof Map ? (Map<String, Object>) value : Map.of();
    }

    /** A small JSON reader: objects, arrays, strings, numbers, true, false and null. */
    static final class Json {
        private final String text;
        private int at;

        Json(String text) {
            this.text = text;
        }

        Object value() {
            skipSpace();
            char c = text.charAt(at);
            if (c == '{') {
                Map<String, Object> object = new LinkedHashMap<>();
                at++;
                skipSpace();
                if (text.charAt(at) == '}') {
                    at++;
                    return object;
                }
                while (true) {
                    skipSpace();
                    String key = string();
                    skipSpace();
                    expect(':');
                    object.put(key, value());
                    skipSpace();
                    if (text.charAt(at++) == '}') {
                        return object;
                    }
                }
            }
            if (c == '[') {
                List<Object> array = new ArrayList<>();
                at++;
                skipSpace();
                if (text.charAt(at) == ']') {
                    at++;
                    return array;
                }
                while (true) {
                    array.add(value());
                    skipSpace();
                    if (text.charAt(at++) == ']') {
                        return array;
                    }
                }
            }
            if (c == '"') {
                return string();
            }
            for (String word : new String[] {"true", "false", "null"}) {
                if (text.startsWith(word, at)) {
                    at += word.length();
                    return word.equals("null") ? null : Boolean.valueOf(word);
                }
            }
            int start = at;
            while (at < text.length() && "+-0123456789.eE".indexOf(text.charAt(at)) >= 0) {
                at++;
            }
            String number = text.substring(start, at);
            return number.matches("-?\\d+") ? (Object) Long.valueOf(number) : (Object) Double.valueOf(number);
        }

        private String string() {
            expect('"');
            StringBuilder out = new StringBuilder();
            while (true) {
                char c = text.charAt(at++);
                if (c == '"') {
                    return out.toString();
                }
                if (c != '\\') {
                    out.append(c);
                    continue;
                }
                char escaped = text.charAt(at++);
                switch (escaped) {
                    case 'n' -> out.append('\n');
                    case 't' -> out.append('\t');
                    case 'r' -> out.append('\r');
                    case 'b' -> out.append('\b');
                    case 'f' -> out.append('\f');
                    case 'u' -> {
                        out.append((char) Integer.parseInt(text.substring(at, at + 4), 16));
                        at += 4;
                    }
                    default -> out.append(escaped);
                }
            }
        }

        private void expect(char c) {
            if (text.charAt(at++) != c) {
                throw new IllegalArgumentException("expected '" + c + "' at " + (at - 1) + " in " + text);
            }
        }

        private void skipSpace() {
            while (at < text.length() && Character.isWhitespace(text.charAt(at))) {
                at++;
            }
        }
    }
}
