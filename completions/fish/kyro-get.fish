# fish completion for kyro-get(1)
# Operands are keys, which are not completed: file names are off.
complete -c kyro-get -f
complete -c kyro-get -s h -l help -d 'Print the usage and exit'
complete -c kyro-get -l version -d 'Print the version and exit'
complete -c kyro-get -s d -l dir -x -a '(__fish_complete_directories (commandline -ct | string replace -r -- "^--dir=" ""))' -d 'Data directory'
complete -c kyro-get -s f -l format -x -d 'Output format' -a '(printf "%s\t%s\n" \
	value "escaped value, one line per key" \
	tsv "key, tab, escaped value" \
	json "one JSON object per line" \
	raw "the exact bytes of one value" \
	replay "with --changes: lines kyro-put --replay reads")'
complete -c kyro-get -l all -d 'List every key in ascending order'
complete -c kyro-get -l range -d 'List the keys from LO to HI inclusive'
complete -c kyro-get -l changes -d 'Print committed changes in order (the change feed)'
complete -c kyro-get -l from -x -d 'With --changes: start at this sequence number'
complete -c kyro-get -l follow -d 'With --changes: wait for new commits and print them'
complete -c kyro-get -l nearest -x -d 'Answer each query vector on stdin with its K nearest keys'
complete -c kyro-get -l ef -x -d "With --nearest: the graph search's beam"
complete -c kyro-get -l exact -d 'With --nearest: compare with every vector'
complete -c kyro-get -l metric -x -d 'With --nearest: the distance' -a '(printf "%s\t%s\n" l2 "squared Euclidean distance" ip "1 - dot product" cosine "1 - cosine")'
complete -c kyro-get -l with-values -d "With --nearest: print each key's value too"
complete -c kyro-get -l fvecs -d 'With --nearest: stdin holds .fvecs records'
complete -c kyro-get -l info -d 'Print the state of the learned index and of the vectors'
