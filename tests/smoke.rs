mod harness;
use harness::*;
use shmprim::*;

child!(fn child_add(ctx) {
    let v = Value::<i64>::open(&ctx.arg("name"))?;
    for _ in 0..ctx.parse::<u32>("n") { v.update(|x| *x += 1)?; }
    ctx.send("done");
});

#[test]
fn smoke_children_increment() {
    let name = unique("smoke");
    let v = Value::<i64>::create(&name, 0).unwrap();
    let kids: Vec<_> = (0..3).map(|_| spawn("child_add").arg("name", &name).arg("n", 1000).start()).collect();
    for k in &kids { k.expect("done"); }
    join_all(kids);
    assert_eq!(v.get().unwrap(), 3000);
}
