"""zray's brokers. Every socket and hop:

   driver (Runtime)          worker (Runtime)          actor worker (Runtime)
   user threads              main thread runs tasks    main thread / pool / asyncio loop
     | outbox + eventfd        | outbox + eventfd         | outbox + eventfd
   I/O thread DEALER         I/O thread DEALER         I/O thread DEALER
         \\ ipc://<session>/node.sock  |                     /
          +---------------> ROUTER  node broker  <---------+        one per machine
                            (node.py: one handler per message type and per action;
                             _scheduling.LocalScheduler = _resources + _tasks + _mailboxes;
                             _clients, _objects, _directory, _memstats;
                             _store: the store's account + its spill thread, eventfd)
                            | DEALER                     | _procs: pipes to the zygote (fork server),
                            v                            | pidfds: worker exits,
                    ROUTER  head broker                  | life pipe: workers die with it
                    (head.py: one handler per message type; _control: nodes, actors,
                     named actors, control calls; _placement: where spilled work goes)
                    ipc://<session>/head.sock

   submit:  owner -> node (SUBMIT, batched) -> worker (TASKS)
   result:  worker -> node (RESULTS) -> owner           4 hops for a task
   borrow:  borrower -> node -> owner (FETCH / BORROW), owner -> node -> borrower (OBJECT)
   store:   client -> node (STORE: made, freed, mapped; ROOM -> ROOM_MADE: /dev/shm is full)
   control: client -> node -> head (HEAD_CALL) -> node -> client (HEAD_REPLY)
"""
