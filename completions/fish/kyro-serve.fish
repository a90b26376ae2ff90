# fish completion for kyro-serve(8)
# The daemon takes no operands: file names are off.
complete -c kyro-serve -f
complete -c kyro-serve -s h -l help -d 'Print the usage and exit'
complete -c kyro-serve -l version -d 'Print the version and exit'
complete -c kyro-serve -s d -l dir -x -a '(__fish_complete_directories (commandline -ct | string replace -r -- "^--dir=" ""))' -d 'Data directory'
complete -c kyro-serve -s l -l listen -x -a '127.0.0.1:3030 0.0.0.0:3030 [::1]:3030' -d 'Address and port to listen on'
complete -c kyro-serve -l threads -x -d 'Worker threads (default: one per CPU)'
complete -c kyro-serve -l sync -x -d 'When a write is made durable' -a '(printf "%s\t%s\n" \
	always "fsync before answering, one per group (default)" \
	batch "fsync within KYRODB_SYNC_INTERVAL_MS" \
	none "fsync only at a clean stop")'
complete -c kyro-serve -l auth-token-file -r -F -d 'Require the bearer token in this file'
complete -c kyro-serve -l max-connections -x -d 'Concurrent connections (default 1024)'
complete -c kyro-serve -l timeout -x -d 'Close idle connections after SECONDS (default 30)'
complete -c kyro-serve -l retain -x -d 'Keep folded WAL segments within SIZE and/or DURATION (default 64M,1h)'
complete -c kyro-serve -l heartbeat -x -d '/v1/subscribe: a comment after SECONDS idle (default 15)'
complete -c kyro-serve -l max-subscribers -x -d 'Concurrent /v1/subscribe streams (default 256)'
complete -c kyro-serve -l replica-of -x -d 'Be a read replica of the kyro-serve at URL'
complete -c kyro-serve -l replica-token-file -r -F -d "The primary's bearer token, in this file"
