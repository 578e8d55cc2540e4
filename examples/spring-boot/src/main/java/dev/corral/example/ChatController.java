package dev.corral.example;

import java.util.List;
import java.util.Map;

import reactor.core.publisher.Flux;

import org.springframework.ai.chat.client.ChatClient;
import org.springframework.ai.embedding.EmbeddingModel;
import org.springframework.http.MediaType;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.RequestParam;
import org.springframework.web.bind.annotation.RestController;

/**
 * Chat, streamed chat, structured output and embeddings through Spring AI's Ollama client, which
 * talks to corral at spring.ai.ollama.base-url.
 */
@RestController
public class ChatController {

    /** What {@code /city} asks the model to fill in: Spring AI sends its JSON schema as "format". */
    public record City(String name, String country, int population) {
    }

    private final ChatClient chatClient;

    private final EmbeddingModel embeddingModel;

    public ChatController(ChatClient.Builder chatClientBuilder, EmbeddingModel embeddingModel) {
        this.chatClient = chatClientBuilder.defaultSystem("You are a helpful assistant. Answer briefly.").build();
        this.embeddingModel = embeddingModel;
    }

    /** {@code GET /chat?message=Why is the sky blue?}: the whole answer at once (POST /api/chat, stream false). */
    @GetMapping("/chat")
    public Map<String, String> chat(@RequestParam(defaultValue = "Tell me a joke") String message) {
        String answer = this.chatClient.prompt().user(message).call().content();
        return Map.of("answer", answer == null ? "" : answer);
    }

    /** {@code GET /chat/stream?message=...}: the answer as server-sent events, piece by piece (stream true). */
    @GetMapping(value = "/chat/stream", produces = MediaType.TEXT_EVENT_STREAM_VALUE)
    public Flux<String> stream(@RequestParam(defaultValue = "Tell me a joke") String message) {
        return this.chatClient.prompt().user(message).stream().content();
    }

    /** {@code GET /city?name=Paris}: structured output bound to a record. */
    @GetMapping("/city")
    public City city(@RequestParam(defaultValue = "Paris") String name) {
        return this.chatClient.prompt().user("Tell me about the city of " + name + ".").call().entity(City.class);
    }

    /** {@code GET /embed?text=...}: an embedding vector (POST /api/embed). */
    @GetMapping("/embed")
    public Map<String, Object> embed(@RequestParam(defaultValue = "Hello World") String text) {
        float[] vector = this.embeddingModel.embed(text);
        return Map.of("dimensions", vector.length, "first", List.of(vector[0], vector[1], vector[2]));
    }

}
