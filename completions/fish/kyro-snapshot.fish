# fish completion for kyro-snapshot(1)
# The tool takes no operands, so file names are turned off.
complete -c kyro-snapshot -f
complete -c kyro-snapshot -s h -l help -d 'Print the usage and exit'
complete -c kyro-snapshot -l version -d 'Print the version and exit'
complete -c kyro-snapshot -s d -l dir -x -a '(__fish_complete_directories (commandline -ct | string replace -r -- "^--dir=" ""))' -d 'Data directory'
complete -c kyro-snapshot -s v -d 'Print a summary on standard error'
complete -c kyro-snapshot -l rmi -d 'Also build the learned index'
complete -c kyro-snapshot -l retain -x -d 'Keep folded WAL segments within SIZE and/or DURATION'
complete -c kyro-snapshot -l vectors -d 'Also build the vector index (HNSW graph)'
complete -c kyro-snapshot -l m -x -d 'With --vectors: links per node of the graph'
complete -c kyro-snapshot -l ef-construction -x -d "With --vectors: the build's beam"
complete -c kyro-snapshot -l metric -x -d 'With --vectors: the distance the graph is built for' -a '(printf "%s\t%s\n" l2 "squared Euclidean distance" ip "1 - dot product" cosine "1 - cosine")'
