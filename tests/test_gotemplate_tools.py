"""Tool-calling templates from Ollama's server/testdata/tools (MIT, Copyright (c) Ollama), with the
prompts Ollama's TestExecuteWithTools expected for one conversation (removed from Ollama in 8cd2b6478).

They exercise what chat-only goldens do not: ranging over tools and their properties, tool calls
with arguments, tool results, and ``{{ .Function }}`` printed as JSON.
"""

from __future__ import annotations

import pytest

from corral.gotemplate.ollama import PromptTemplate, PromptValues

TOOLS = [{'type': 'function',
  'function': {'name': 'get_current_weather',
               'description': 'Get the current weather',
               'parameters': {'type': 'object',
                              'properties': {'location': {'type': 'string',
                                                          'description': 'The city and state, e.g. '
                                                                         'San Francisco, CA'},
                                             'format': {'type': 'string',
                                                        'enum': ['celsius', 'fahrenheit'],
                                                        'description': 'The temperature unit to '
                                                                       'use. Infer this from the '
                                                                       "user's location."}},
                              'required': ['location', 'format']}}}]

MESSAGES = [{'role': 'system',
  'content': 'You are a knowledgeable assistant. You can answer questions and perform tasks.'},
 {'role': 'user', 'content': "What's the weather like today in Paris?"},
 {'role': 'assistant',
  'tool_calls': [{'id': '89a1e453-0bce-4de3-a456-c54bed09c520',
                  'type': 'function',
                  'function': {'name': 'get_current_weather',
                               'arguments': {'location': 'Paris, France', 'format': 'celsius'}}}]},
 {'role': 'tool', 'tool_call_id': '89a1e453-0bce-4de3-a456-c54bed09c520', 'content': '22'},
 {'role': 'assistant',
  'content': 'The current temperature in Paris, France is 22 degrees Celsius.'},
 {'role': 'user', 'content': "What's the weather like today in San Francisco and Toronto?"}]

CASES = {
    'command-r-plus': (
        (
            '{{- if or .Tools .System }}<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>\n'
            '{{- if .Tools }}# Safety Preamble\n'
            "The instructions in this section override those in the task description and style guide sections. Don't answer questions that are harmful or immoral.\n"
            '\n'
            '# System Preamble\n'
            '## Basic Rules\n'
            "You are a powerful conversational AI trained by Cohere to help people. You are augmented by a number of tools, and your job is to use and consume the output of these tools to best help the user. You will see a conversation history between yourself and a user, ending with an utterance from the user. You will then see a specific instruction instructing you what kind of response to generate. When you answer the user's requests, you cite your sources in your answers, according to those instructions.\n"
            '\n'
            '{{ if .System }}# User Preamble\n'
            '{{ .System }}\n'
            '{{- end }}\n'
            '\n'
            '## Available Tools\n'
            'Here is a list of tools that you have available to you:\n'
            '{{- range .Tools }}\n'
            '\n'
            '```python\n'
            'def {{ .Function.Name }}(\n'
            '{{- range $name, $property := .Function.Parameters.Properties }}{{ $name }}: {{ $property.Type }}, {{ end }}) -> List[Dict]:\n'
            '    """{{ .Function.Description }}\n'
            '\n'
            '{{- if .Function.Parameters.Properties }}\n'
            '\n'
            '    Args:\n'
            '{{- range $name, $property := .Function.Parameters.Properties }}\n'
            '        {{ $name }} ({{ $property.Type }}): {{ $property.Description }}\n'
            '{{- end }}\n'
            '{{- end }}\n'
            '    """\n'
            '    pass\n'
            '```\n'
            '{{- end }}\n'
            '{{- else if .System }}{{ .System }}\n'
            '{{- end }}<|END_OF_TURN_TOKEN|>\n'
            '{{- end }}\n'
            '{{- range .Messages }}\n'
            '{{- if eq .Role "system" }}\n'
            '{{- continue }}\n'
            '{{- end }}<|START_OF_TURN_TOKEN|>\n'
            '{{- if eq .Role "user" }}<|USER_TOKEN|>{{ .Content }}\n'
            '{{- else if eq .Role "assistant" }}<|CHATBOT_TOKEN|>\n'
            '{{- if .Content }}{{ .Content }}\n'
            '{{- else if .ToolCalls }}\n'
            'Action: ```json\n'
            '[\n'
            '{{- range .ToolCalls }}\n'
            '    {\n'
            '        "tool_name": "{{ .Function.Name }}",\n'
            '        "parameters": {{ .Function.Arguments }}\n'
            '    }\n'
            '{{- end }}\n'
            ']```\n'
            '{{ continue }}\n'
            '{{ end }}\n'
            '{{- else if eq .Role "tool" }}<|SYSTEM_TOKEN|><results>\n'
            '{{ .Content }}</results>\n'
            '{{- end }}<|END_OF_TURN_TOKEN|>\n'
            '{{- end }}\n'
            "{{- if .Tools }}<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>Write 'Action:' followed by a json-formatted list of actions that you want to perform in order to produce a good response to the user's last input. You can use any of the supplied tools any number of times, but you should aim to execute the minimum number of necessary actions for the input. You should use the `directly-answer` tool if calling the other tools is unnecessary. The list of actions you want to call should be formatted as a list of json objects, for example:\n"
            '```json\n'
            '[\n'
            '    {\n'
            '        "tool_name": title of the tool in the specification,\n'
            '        "parameters": a dict of parameters to input into the tool as they are defined in the specs, or {} if it takes no parameters\n'
            '    }\n'
            ']```\n'
            '{{- end }}<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>'
        ),
        (
            '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|># Safety Preamble\n'
            "The instructions in this section override those in the task description and style guide sections. Don't answer questions that are harmful or immoral.\n"
            '\n'
            '# System Preamble\n'
            '## Basic Rules\n'
            "You are a powerful conversational AI trained by Cohere to help people. You are augmented by a number of tools, and your job is to use and consume the output of these tools to best help the user. You will see a conversation history between yourself and a user, ending with an utterance from the user. You will then see a specific instruction instructing you what kind of response to generate. When you answer the user's requests, you cite your sources in your answers, according to those instructions.\n"
            '\n'
            '# User Preamble\n'
            'You are a knowledgeable assistant. You can answer questions and perform tasks.\n'
            '\n'
            '## Available Tools\n'
            'Here is a list of tools that you have available to you:\n'
            '\n'
            '```python\n'
            'def get_current_weather(format: string, location: string, ) -> List[Dict]:\n'
            '    """Get the current weather\n'
            '\n'
            '    Args:\n'
            "        format (string): The temperature unit to use. Infer this from the user's location.\n"
            '        location (string): The city and state, e.g. San Francisco, CA\n'
            '    """\n'
            '    pass\n'
            "```<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>What's the weather like today in Paris?<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>\n"
            'Action: ```json\n'
            '[\n'
            '    {\n'
            '        "tool_name": "get_current_weather",\n'
            '        "parameters": {"format":"celsius","location":"Paris, France"}\n'
            '    }\n'
            ']```\n'
            '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|><results>\n'
            "22</results><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>The current temperature in Paris, France is 22 degrees Celsius.<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>What's the weather like today in San Francisco and Toronto?<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>Write 'Action:' followed by a json-formatted list of actions that you want to perform in order to produce a good response to the user's last input. You can use any of the supplied tools any number of times, but you should aim to execute the minimum number of necessary actions for the input. You should use the `directly-answer` tool if calling the other tools is unnecessary. The list of actions you want to call should be formatted as a list of json objects, for example:\n"
            '```json\n'
            '[\n'
            '    {\n'
            '        "tool_name": title of the tool in the specification,\n'
            '        "parameters": a dict of parameters to input into the tool as they are defined in the specs, or {} if it takes no parameters\n'
            '    }\n'
            ']```<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>'
        ),
    ),
    'firefunction': (
        (
            '{{- if or .System .Tools }}<|start_header_id|>system<|end_header_id|>\n'
            '{{- if .System }}\n'
            '{{ .System }}\n'
            '{{- end }}\n'
            'In addition to plain text responses, you can chose to call one or more of the provided functions.\n'
            '\n'
            'Use the following rule to decide when to call a function:\n'
            '  * if the response can be generated from your internal knowledge (e.g., as in the case of queries like "What is the capital of Poland?"), do so\n'
            '  * if you need external information that can be obtained by calling one or more of the provided functions, generate a function calls\n'
            '\n'
            'If you decide to call functions:\n'
            '  * prefix function calls with functools marker (no closing marker required)\n'
            '  * all function calls should be generated in a single JSON list formatted as functools[{"name": [function name], "arguments": [function arguments as JSON]}, ...]\n'
            '  * follow the provided JSON schema. Do not hallucinate arguments or values. Do to blindly copy values from the provided samples\n'
            '  * respect the argument type formatting. E.g., if the type if number and format is float, write value 7 as 7.0\n'
            '  * make sure you pick the right functions that match the user intent\n'
            '\n'
            'Available functions as JSON spec:\n'
            '{{- if .Tools }}\n'
            '{{ .Tools }}\n'
            '{{- end }}<|eot_id|>\n'
            '{{- end }}\n'
            '{{- range .Messages }}<|start_header_id|>\n'
            '{{- if or (eq .Role "user") (eq .Role "assistant") (eq .Role "tool") }}{{ .Role }}\n'
            '{{- end }}<|end_header_id|>\n'
            '{{- if .Content }}{{ .Content }}\n'
            '{{- else if .ToolCalls }} functools[\n'
            '{{- range .ToolCalls }}{{ "{" }}"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}{{ "}" }}\n'
            '{{- end }}]\n'
            '{{- end }}<|eot_id|>\n'
            '{{- end }}<|start_header_id|>assistant<|end_header_id|>'
        ),
        (
            '<|start_header_id|>system<|end_header_id|>\n'
            'You are a knowledgeable assistant. You can answer questions and perform tasks.\n'
            'In addition to plain text responses, you can chose to call one or more of the provided functions.\n'
            '\n'
            'Use the following rule to decide when to call a function:\n'
            '  * if the response can be generated from your internal knowledge (e.g., as in the case of queries like "What is the capital of Poland?"), do so\n'
            '  * if you need external information that can be obtained by calling one or more of the provided functions, generate a function calls\n'
            '\n'
            'If you decide to call functions:\n'
            '  * prefix function calls with functools marker (no closing marker required)\n'
            '  * all function calls should be generated in a single JSON list formatted as functools[{"name": [function name], "arguments": [function arguments as JSON]}, ...]\n'
            '  * follow the provided JSON schema. Do not hallucinate arguments or values. Do to blindly copy values from the provided samples\n'
            '  * respect the argument type formatting. E.g., if the type if number and format is float, write value 7 as 7.0\n'
            '  * make sure you pick the right functions that match the user intent\n'
            '\n'
            'Available functions as JSON spec:\n'
            '[{"type":"function","function":{"name":"get_current_weather","description":"Get the current weather","parameters":{"type":"object","required":["location","format"],"properties":{"format":{"type":"string","description":"The temperature unit to use. Infer this from the user\'s location.","enum":["celsius","fahrenheit"]},"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"}}}}}]<|eot_id|><|start_header_id|><|end_header_id|>You are a knowledgeable assistant. You can answer questions and perform tasks.<|eot_id|><|start_header_id|>user<|end_header_id|>What\'s the weather like today in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|> functools[{"name": "get_current_weather", "arguments": {"format":"celsius","location":"Paris, France"}}]<|eot_id|><|start_header_id|>tool<|end_header_id|>22<|eot_id|><|start_header_id|>assistant<|end_header_id|>The current temperature in Paris, France is 22 degrees Celsius.<|eot_id|><|start_header_id|>user<|end_header_id|>What\'s the weather like today in San Francisco and Toronto?<|eot_id|><|start_header_id|>assistant<|end_header_id|>'
        ),
    ),
    'llama3-groq-tool-use': (
        (
            '{{- if .Messages }}\n'
            '{{- if or .System .Tools }}<|start_header_id|>system<|end_header_id|>\n'
            '\n'
            '{{ .System }}\n'
            "{{- if .Tools }} You are provided with function signatures within <tools></tools> XML tags. You may call one or more functions to assist with the user query. Don't make assumptions about what values to plug into functions. For each function call return a json object with function name and arguments within <tool_call></tool_call> XML tags as follows:\n"
            '<tool_call>\n'
            '{"name": <function-name>,"arguments": <args-dict>}\n'
            '</tool_call>\n'
            '\n'
            'Here are the available tools:\n'
            '<tools>\n'
            '{{- range .Tools }} {{ .Function }}\n'
            '{{- end }} </tools>\n'
            '{{- end }}\n'
            '{{- end }}<|eot_id|>\n'
            '{{- range .Messages }}\n'
            '{{- if ne .Role "system" }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n'
            '\n'
            '{{ if eq .Role "user" }}{{ .Content }}\n'
            '{{- else if eq .Role "assistant" }}\n'
            '{{- if .Content }}{{ .Content }}\n'
            '{{- else if .ToolCalls }}<tool_call>\n'
            '{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}\n'
            '{{- end }}\n'
            '</tool_call>\n'
            '{{- end }}\n'
            '{{- else if eq .Role "tool" }}<tool_response>\n'
            '{{ .Content }}\n'
            '</tool_response>\n'
            '{{- end }}<|eot_id|>\n'
            '{{- end }}\n'
            '{{- end }}<|start_header_id|>assistant<|end_header_id|>\n'
            '\n'
            '{{ else }}\n'
            '{{ if .System }}<|start_header_id|>system<|end_header_id|>\n'
            '\n'
            '{{ .System }}<|eot_id|>{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n'
            '\n'
            '{{ .Prompt }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n'
            '\n'
            '{{ end }}{{ .Response }}\n'
            '{{- if .Response }}<|eot_id|>\n'
            '{{- end }}'
        ),
        (
            '<|start_header_id|>system<|end_header_id|>\n'
            '\n'
            "You are a knowledgeable assistant. You can answer questions and perform tasks. You are provided with function signatures within <tools></tools> XML tags. You may call one or more functions to assist with the user query. Don't make assumptions about what values to plug into functions. For each function call return a json object with function name and arguments within <tool_call></tool_call> XML tags as follows:\n"
            '<tool_call>\n'
            '{"name": <function-name>,"arguments": <args-dict>}\n'
            '</tool_call>\n'
            '\n'
            'Here are the available tools:\n'
            '<tools> {"name":"get_current_weather","description":"Get the current weather","parameters":{"type":"object","required":["location","format"],"properties":{"format":{"type":"string","description":"The temperature unit to use. Infer this from the user\'s location.","enum":["celsius","fahrenheit"]},"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"}}}} </tools><|eot_id|><|start_header_id|>user<|end_header_id|>\n'
            '\n'
            "What's the weather like today in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
            '\n'
            '<tool_call>\n'
            '{"name": "get_current_weather", "arguments": {"format":"celsius","location":"Paris, France"}}\n'
            '</tool_call><|eot_id|><|start_header_id|>tool<|end_header_id|>\n'
            '\n'
            '<tool_response>\n'
            '22\n'
            '</tool_response><|eot_id|><|start_header_id|>assistant<|end_header_id|>\n'
            '\n'
            'The current temperature in Paris, France is 22 degrees Celsius.<|eot_id|><|start_header_id|>user<|end_header_id|>\n'
            '\n'
            "What's the weather like today in San Francisco and Toronto?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
            '\n'
        ),
    ),
    'mistral': (
        (
            '{{- range $index, $_ := .Messages }}\n'
            '{{- if eq .Role "user" }}\n'
            '{{- if and (eq (len (slice $.Messages $index)) 1) $.Tools }}[AVAILABLE_TOOLS] {{ $.Tools }}[/AVAILABLE_TOOLS]\n'
            '{{- end }}[INST] {{ if and (eq (len (slice $.Messages $index)) 1) $.System }}{{ $.System }}\n'
            '\n'
            '{{ end }}{{ .Content }}[/INST]\n'
            '{{- else if eq .Role "assistant" }}\n'
            '{{- if .Content }} {{ .Content }}</s>\n'
            '{{- else if .ToolCalls }}[TOOL_CALLS] [\n'
            '{{- range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}\n'
            '{{- end }}]</s>\n'
            '{{- end }}\n'
            '{{- else if eq .Role "tool" }}[TOOL_RESULTS] {"content": {{ .Content }}}[/TOOL_RESULTS]\n'
            '{{- end }}\n'
            '{{- end }}'
        ),
        (
            '[INST] What\'s the weather like today in Paris?[/INST][TOOL_CALLS] [{"name": "get_current_weather", "arguments": {"format":"celsius","location":"Paris, France"}}]</s>[TOOL_RESULTS] {"content": 22}[/TOOL_RESULTS] The current temperature in Paris, France is 22 degrees Celsius.</s>[AVAILABLE_TOOLS] [{"type":"function","function":{"name":"get_current_weather","description":"Get the current weather","parameters":{"type":"object","required":["location","format"],"properties":{"format":{"type":"string","description":"The temperature unit to use. Infer this from the user\'s location.","enum":["celsius","fahrenheit"]},"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"}}}}}][/AVAILABLE_TOOLS][INST] You are a knowledgeable assistant. You can answer questions and perform tasks.\n'
            '\n'
            "What's the weather like today in San Francisco and Toronto?[/INST]"
        ),
    ),
    'nemotron': (
        (
            '{{- if (or .Tools .System) }}<extra_id_0>System\n'
            '{{ if .System }}{{ .System }}\n'
            '\n'
            '\n'
            '{{ end }}\n'
            '{{- if .Tools }}\n'
            '{{- range .Tools }}<tool> {{ . }} </tool>{{ end }}\n'
            '\n'
            '\n'
            '{{ end }}\n'
            '{{- end }}\n'
            '{{- range $i, $m := .Messages }}\n'
            '{{- $last := eq (len (slice $.Messages $i)) 1 -}}\n'
            '{{- if eq .Role "user" }}<extra_id_1>User\n'
            '{{ .Content }}\n'
            '{{- if $last }}\n'
            '<extra_id_1>Assistant\n'
            '{{- end }}\n'
            '{{ else if eq .Role "tool" }}<extra_id_1>Tool\n'
            '{{ .Content }}\n'
            '{{- if $last }}\n'
            '<extra_id_1>Assistant\n'
            '{{- end }}\n'
            '{{ else if eq .Role "assistant" }}<extra_id_1>Assistant\n'
            '{{- if .ToolCalls }}\n'
            '{{ range .ToolCalls }}<toolcall> {"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}} </toolcall> {{ end }}\n'
            '{{ else }}\n'
            '{{ .Content }}\n'
            '{{- if not $last }}\n'
            '{{ end }}\n'
            '{{- end }}\n'
            '{{- end }}\n'
            '{{- end }}'
        ),
        (
            '<extra_id_0>System\n'
            'You are a knowledgeable assistant. You can answer questions and perform tasks.\n'
            '\n'
            '\n'
            '<tool> {"type":"function","function":{"name":"get_current_weather","description":"Get the current weather","parameters":{"type":"object","required":["location","format"],"properties":{"format":{"type":"string","description":"The temperature unit to use. Infer this from the user\'s location.","enum":["celsius","fahrenheit"]},"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"}}}}} </tool>\n'
            '\n'
            '\n'
            '<extra_id_1>User\n'
            "What's the weather like today in Paris?\n"
            '<extra_id_1>Assistant\n'
            '<toolcall> {"name": "get_current_weather", "arguments": {"format":"celsius","location":"Paris, France"}} </toolcall> \n'
            '<extra_id_1>Tool\n'
            '22\n'
            '<extra_id_1>Assistant\n'
            'The current temperature in Paris, France is 22 degrees Celsius.\n'
            '<extra_id_1>User\n'
            "What's the weather like today in San Francisco and Toronto?\n"
            '<extra_id_1>Assistant\n'
        ),
    ),
    'xlam': (
        (
            '{{- if .System }}{{ .System }}\n'
            '{{ end }}\n'
            '{{- range $i, $_ := .Messages }}\n'
            '{{- if eq .Role "user" }}### Instruction:\n'
            '{{- if and $.Tools (le (len (slice $.Messages $i)) 2) }}\n'
            '[BEGIN OF TASK INSTRUCTION]\n'
            'You are an expert in composing functions. You are given a question and a set of possible functions. \n'
            'Based on the question, you will need to make one or more function/tool calls to achieve the purpose. \n'
            'If none of the functions can be used, point it out and refuse to answer. \n'
            'If the given question lacks the parameters required by the function, also point it out.\n'
            '[END OF TASK INSTRUCTION]\n'
            '\n'
            '[BEGIN OF AVAILABLE TOOLS]\n'
            '{{ $.Tools }}\n'
            '[END OF AVAILABLE TOOLS]\n'
            '\n'
            '[BEGIN OF FORMAT INSTRUCTION]\n'
            'The output MUST strictly adhere to the following JSON format, and NO other text MUST be included.\n'
            "The example format is as follows. Please make sure the parameter type is correct. If no function call is needed, please make tool_calls an empty list '[]'.\n"
            '```\n'
            '{\n'
            '    "tool_calls": [\n'
            '    {"name": "func_name1", "arguments": {"argument1": "value1", "argument2": "value2"}},\n'
            '    ... (more tool calls as required)\n'
            '    ]\n'
            '}\n'
            '```\n'
            '[END OF FORMAT INSTRUCTION]\n'
            '\n'
            '[BEGIN OF QUERY]\n'
            '{{ .Content }}\n'
            '[END OF QUERY]\n'
            '\n'
            '\n'
            '{{ else }}\n'
            '{{ .Content }}\n'
            '{{ end }}\n'
            '{{- else if .ToolCalls }}### Response:\n'
            '{"tool_calls": [{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}{{ end }}]}\n'
            '<|EOT|>\n'
            '{{ else if eq .Role "assistant" }}### Response:\n'
            '{{ .Content }}\n'
            '<|EOT|>\n'
            '{{ end }}\n'
            '{{- end }}### Response:'
        ),
        (
            'You are a knowledgeable assistant. You can answer questions and perform tasks.\n'
            '### Instruction:\n'
            "What's the weather like today in Paris?\n"
            '### Response:\n'
            '{"tool_calls": [{"name": "get_current_weather", "arguments": {"format":"celsius","location":"Paris, France"}}]}\n'
            '<|EOT|>\n'
            '### Response:\n'
            'The current temperature in Paris, France is 22 degrees Celsius.\n'
            '<|EOT|>\n'
            '### Instruction:\n'
            '[BEGIN OF TASK INSTRUCTION]\n'
            'You are an expert in composing functions. You are given a question and a set of possible functions. \n'
            'Based on the question, you will need to make one or more function/tool calls to achieve the purpose. \n'
            'If none of the functions can be used, point it out and refuse to answer. \n'
            'If the given question lacks the parameters required by the function, also point it out.\n'
            '[END OF TASK INSTRUCTION]\n'
            '\n'
            '[BEGIN OF AVAILABLE TOOLS]\n'
            '[{"type":"function","function":{"name":"get_current_weather","description":"Get the current weather","parameters":{"type":"object","required":["location","format"],"properties":{"format":{"type":"string","description":"The temperature unit to use. Infer this from the user\'s location.","enum":["celsius","fahrenheit"]},"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"}}}}}]\n'
            '[END OF AVAILABLE TOOLS]\n'
            '\n'
            '[BEGIN OF FORMAT INSTRUCTION]\n'
            'The output MUST strictly adhere to the following JSON format, and NO other text MUST be included.\n'
            "The example format is as follows. Please make sure the parameter type is correct. If no function call is needed, please make tool_calls an empty list '[]'.\n"
            '```\n'
            '{\n'
            '    "tool_calls": [\n'
            '    {"name": "func_name1", "arguments": {"argument1": "value1", "argument2": "value2"}},\n'
            '    ... (more tool calls as required)\n'
            '    ]\n'
            '}\n'
            '```\n'
            '[END OF FORMAT INSTRUCTION]\n'
            '\n'
            '[BEGIN OF QUERY]\n'
            "What's the weather like today in San Francisco and Toronto?\n"
            '[END OF QUERY]\n'
            '\n'
            '\n'
            '### Response:'
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tool_template_renders_ollamas_expected_prompt(name: str) -> None:
    template, expected = CASES[name]
    assert PromptTemplate.parse(template).render(PromptValues(messages=MESSAGES, tools=TOOLS)) == expected


@pytest.mark.parametrize("name", sorted(CASES))
def test_tool_templates_have_the_tools_capability(name: str) -> None:
    assert "tools" in PromptTemplate.parse(CASES[name][0]).capabilities()
